"""The demo sets load through mmpretrain, mmdet and mmseg with the usual
pipelines, hold exactly what the generator placed, and are reproducible."""
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope


# numpy 2 warns on every torch -> numpy conversion inside pycocotools and
# mmpretrain; not ours to fix, and it buries the report.
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')


def _scoped(scope, build):
    with DefaultScope.overwrite_default_scope(scope):
        return build()


# ---------------------------------------------------------------- ImageNet
def test_imagenet_through_mmpretrain(demo_data, demo_gen):
    from mmpretrain.datasets import ImageNet
    root = demo_data / 'imagenet'
    classes = demo_gen.IMAGENET_CLASSES
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.2, 1.)),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackInputs'),
    ]
    train, val = (_scoped('mmpretrain', lambda split=split: ImageNet(
        data_root=str(root), split=split,
        classes=str(root / 'meta' / 'classes.txt'), pipeline=pipeline))
        for split in ('train', 'val'))
    assert train.CLASSES == classes
    assert len(train) >= 300 and len(val) > 0
    # Every label is the photograph named by the image's class folder.
    for i in range(len(train)):
        info = train.get_data_info(i)
        assert Path(info['img_path']).parent.name == classes[info['gt_label']]
    assert sorted({val.get_data_info(i)['gt_label'] for i in range(len(val))}
                  ) == list(range(len(classes)))
    sample = train[len(train) - 1]
    assert sample['inputs'].shape == (3, 64, 64)
    assert sample['inputs'].dtype == torch.uint8
    assert sample['data_samples'].gt_label.tolist() == [len(classes) - 1]
    raw = _scoped('mmpretrain', lambda: ImageNet(
        data_root=str(root), split='train',
        pipeline=[dict(type='LoadImageFromFile')]))
    assert raw[0]['img'].shape == (256, 256, 3)


# -------------------------------------------------------------------- COCO
def _coco(demo_data, demo_gen, split):
    from mmdet.datasets import CocoDataset
    return _scoped('mmdet', lambda: CocoDataset(
        data_root=str(demo_data / 'coco'),
        ann_file=f'annotations/instances_{split}.json',
        data_prefix=dict(img=f'{split}/'),
        metainfo=dict(classes=demo_gen.COCO_CLASSES),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='PackDetInputs'),
        ]))


@pytest.mark.parametrize('split', ['train2017', 'val2017'])
def test_coco_through_mmdet_matches_placement(demo_data, demo_gen, split):
    dataset = _coco(demo_data, demo_gen, split)
    layout = demo_gen.coco_layout(split)
    assert len(dataset) == len(layout)
    if split == 'train2017':
        assert len(dataset) >= 40
    for placed, sample in zip(layout, dataset):
        meta = sample['data_samples'].metainfo
        assert meta['img_id'] == placed['id']
        assert meta['ori_shape'] == (placed['height'], placed['width'])
        gt = sample['data_samples'].gt_instances
        objects = placed['objects']
        expected_boxes = [[x, y, x + w, y + h]
                          for x, y, w, h in (o['bbox'] for o in objects)]
        assert gt.bboxes.tensor.tolist() == expected_boxes
        assert gt.labels.tolist() == [
            demo_gen.COCO_CLASSES.index(o['name']) for o in objects]
        masks = gt.masks.to_ndarray().astype(bool)
        for mask, box, obj in zip(masks, expected_boxes, objects):
            np.testing.assert_array_equal(mask, obj['mask'])
            # the box is the exact extent of the mask
            ys, xs = np.nonzero(mask)
            assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box
            assert mask.sum() == obj['area']
        # The image is the composite up to JPEG loss (compared on luma:
        # JPEG halves the chroma resolution).
        image = sample['inputs'].permute(1, 2, 0).numpy()
        got = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
        want = cv2.cvtColor(placed['image'], cv2.COLOR_RGB2GRAY)
        got, want = got.astype(float), want.astype(float)
        assert np.abs(got - want).mean() < 4
        for obj in objects:  # the object's pixels are under its mask
            mask = obj['mask']
            assert np.abs(got - want)[mask].mean() < 4
            assert np.corrcoef(got[mask], want[mask])[0, 1] > 0.95


@pytest.mark.env  # checks the installed evaluator, not mmumae
def test_coco_metric_on_ground_truth(demo_data, demo_gen):
    """Ground truth scored as predictions gives AP 1 for boxes and masks
    (CocoMetric and pycocotools on numpy 2)."""
    from mmdet.evaluation import CocoMetric
    dataset = _coco(demo_data, demo_gen, 'val2017')
    metric = CocoMetric(
        ann_file=str(demo_data / 'coco/annotations/instances_val2017.json'),
        metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for sample in dataset:
        gt = sample['data_samples'].gt_instances
        metric.process({}, [dict(
            img_id=sample['data_samples'].img_id,
            ori_shape=sample['data_samples'].ori_shape,
            pred_instances=dict(
                bboxes=gt.bboxes.tensor, labels=gt.labels,
                scores=torch.ones(len(gt.labels)),
                masks=torch.from_numpy(gt.masks.to_ndarray()).bool()))])
    results = metric.evaluate(len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


# ------------------------------------------------------------------ ADE20K
def _ade(demo_data, split):
    from mmseg.datasets import ADE20KDataset
    return _scoped('mmseg', lambda: ADE20KDataset(
        data_root=str(demo_data / 'ade' / 'ADEChallengeData2016'),
        data_prefix=dict(img_path=f'images/{split}',
                         seg_map_path=f'annotations/{split}'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='PackSegInputs'),
        ]))


@pytest.mark.parametrize('split', ['training', 'validation'])
def test_ade_through_mmseg_matches_labels(demo_data, demo_gen, split):
    dataset = _ade(demo_data, split)
    layout = demo_gen.ade_layout(split)
    assert len(dataset) == len(layout)
    if split == 'training':
        assert len(dataset) >= 40
    assert len(dataset.metainfo['classes']) == 150  # stock ADE20K classes
    seen = set()
    for placed, sample in zip(layout, dataset):
        assert Path(sample['data_samples'].img_path).stem == placed['name']
        got = sample['data_samples'].gt_sem_seg.data[0].numpy()
        # reduce_zero_label: ADE id k -> class k - 1, 0 ("other") -> 255
        label = placed['label'].astype(int)
        expected = np.where(label == 0, 255, label - 1)
        np.testing.assert_array_equal(got, expected)
        seen.update(np.unique(got).tolist())
        image = sample['inputs'].permute(1, 2, 0).numpy()[..., ::-1]
        assert np.abs(image.astype(int) - placed['image']).mean() < 4
    names = [dataset.metainfo['classes'][c] for c in sorted(seen - {255})]
    assert names == sorted(demo_gen.ADE_IDS, key=demo_gen.ADE_IDS.get)
    if split == 'training':
        assert 255 in seen  # some "other" pixels to ignore


@pytest.mark.env  # checks the installed evaluator, not mmumae
def test_iou_metric_on_ground_truth(demo_data):
    """Ground truth scored as prediction: IoU 100 on the classes present
    (IoUMetric on numpy 2)."""
    from mmseg.evaluation import IoUMetric
    dataset = _ade(demo_data, 'validation')
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    for sample in dataset:
        seg = sample['data_samples'].gt_sem_seg.data
        metric.process({}, [dict(pred_sem_seg=dict(data=seg),
                                 gt_sem_seg=dict(data=seg))])
    results = metric.evaluate(len(dataset))
    assert results['mIoU'] == pytest.approx(100.0)
    assert results['aAcc'] == pytest.approx(100.0)


# ------------------------------------------------------ generation itself
def _tree_digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


def test_generation_is_deterministic_and_idempotent(tmp_path, demo_gen,
                                                    capsys):
    first, second = tmp_path / 'a', tmp_path / 'b'
    demo_gen.make_demo_data(str(first))
    demo_gen.make_demo_data(str(second), verbose=False)
    digest = _tree_digest(first)
    assert digest == _tree_digest(second)
    assert len(digest) > 300 + 40 + 2 * 40
    out = capsys.readouterr().out
    for part in ('imagenet', 'coco', 'ADEChallengeData2016', 'done'):
        assert part in out
    # A second run with the stamp in place writes nothing ...
    probe = first / 'imagenet' / 'meta' / 'train.txt'
    os.utime(probe, (0, 0))
    demo_gen.make_demo_data(str(first))
    assert probe.stat().st_mtime == 0
    assert 'already holds' in capsys.readouterr().out
    # ... --force rewrites (same bytes), and stale files go.
    stale = first / 'coco' / 'train2017' / 'stale.jpg'
    stale.write_bytes(b'')
    demo_gen.make_demo_data(str(first), force=True, verbose=False)
    assert probe.stat().st_mtime > 0 and not stale.exists()
    assert _tree_digest(first) == digest


def test_command_line_writes_the_same_sets(tmp_path, demo_data):
    """``tools/dataset_converters/make_demo_data.py --out DIR`` (what
    ``make data`` runs) writes the same files as the generator, then keeps
    them on a second call."""
    import subprocess
    import sys
    script = Path(__file__).resolve().parents[1] / 'tools' / \
        'dataset_converters' / 'make_demo_data.py'
    out = tmp_path / 'demo'
    for expect in ('done in', 'already holds'):
        proc = subprocess.run([sys.executable, str(script), '--out',
                               str(out)], capture_output=True, text=True)
        assert proc.returncode == 0 and expect in proc.stdout, proc.stderr
    assert _tree_digest(out) == _tree_digest(demo_data)
