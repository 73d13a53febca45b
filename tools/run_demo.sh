#!/usr/bin/env bash
# Demo run (placeholder until UM-MAE pre-training lands here): loads the demo
# data in data/demo through mmpretrain's ImageNet, mmdet's CocoDataset and
# mmseg's ADE20KDataset with their usual pipelines and prints what it finds.
# Run `make data` (or `make demo`) first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${MMUMAE_VENV:-$ROOT/.venv}/bin/python"
DATA="${DEMO_DATA:-data/demo}"

"$PY" - "$DATA" <<'PY'
import sys
import time

from mmengine.registry import DefaultScope

import mmumae  # noqa: F401  (compatibility fixes)

data = sys.argv[1]
start = time.time()

with DefaultScope.overwrite_default_scope('mmpretrain'):
    from mmpretrain.datasets import ImageNet
    ds = ImageNet(
        data_root=f'{data}/imagenet', split='train',
        classes=f'{data}/imagenet/meta/classes.txt',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='RandomResizedCrop', scale=64),
                  dict(type='PackInputs')])
    sample = ds[0]
    print(f'ImageNet   {len(ds)} train images, {len(ds.CLASSES)} classes; '
          f'first: {tuple(sample["inputs"].shape)} '
          f'label {sample["data_samples"].gt_label.item()}')

with DefaultScope.overwrite_default_scope('mmdet'):
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(
        data_root=f'{data}/coco', ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        metainfo=dict(classes=('person', 'cat', 'cup')),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                  dict(type='PackDetInputs')])
    gt = ds[0]['data_samples'].gt_instances
    print(f'COCO       {len(ds)} train images; first: {len(gt)} instances, '
          f'boxes {gt.bboxes.tensor.int().tolist()}')

with DefaultScope.overwrite_default_scope('mmseg'):
    from mmseg.datasets import ADE20KDataset
    ds = ADE20KDataset(
        data_root=f'{data}/ade/ADEChallengeData2016',
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')])
    seg = ds[0]['data_samples'].gt_sem_seg.data
    names = [ds.metainfo['classes'][int(c)] for c in seg.unique() if c != 255]
    print(f'ADE20K     {len(ds)} training images; first: classes {names}')

print(f'demo data OK ({time.time() - start:.1f} s)')
PY
