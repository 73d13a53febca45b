"""Downstream data errors name the file and the fix.

The shipped mmdet / mmseg demo configs on a copy of the demo data
(``make data``), with one file broken the way users break them.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image
from tool_helpers import REPO, load_tool

from runsafe import RunError, check_dataset_paths

train_tool = load_tool(REPO / 'tools' / 'train.py', 'mmumae_data_train2')
DET_DEMO = REPO / 'configs' / 'mmdet' / 'mask-rcnn_swin-mini_demo.py'
SEG_DEMO = REPO / 'configs' / 'mmseg' / 'upernet_swin-mini_demo.py'


def _coco_cfg(demo_data: Path, ann: Path) -> Config:
    cfg = Config.fromfile(DET_DEMO)
    cfg.train_dataloader.dataset.data_root = str(demo_data / 'coco') + '/'
    cfg.train_dataloader.dataset.ann_file = str(ann)
    return cfg


def test_truncated_coco_json_names_the_file(tmp_path, demo_data):
    text = (demo_data / 'coco/annotations/instances_train2017.json'
            ).read_text()
    ann = tmp_path / 'instances_train2017.json'
    ann.write_text(text[:len(text) // 2])
    with pytest.raises(RunError) as info:
        check_dataset_paths(_coco_cfg(demo_data, ann))
    assert str(info.value) == (
        f'train_dataloader: the annotation file {ann} ends in the middle '
        'of its JSON (truncated); re-download or regenerate it.')
    # Complete-looking but damaged inside: parsed, with the position.
    ann.write_text(text[:len(text) // 2] + '}')
    with pytest.raises(RunError, match=r'is not valid JSON \(.*line 1'):
        check_dataset_paths(_coco_cfg(demo_data, ann))


def test_coco_json_without_images(tmp_path, demo_data):
    data = json.loads((demo_data / 'coco/annotations/instances_train2017.json'
                       ).read_text())
    data['images'] = []
    ann = tmp_path / 'instances_train2017.json'
    ann.write_text(json.dumps(data))
    with pytest.raises(RunError, match=f'{ann} lists no images'):
        check_dataset_paths(_coco_cfg(demo_data, ann))


def test_missing_coco_data_gets_coco_advice(tmp_path):
    message = None
    with pytest.raises(SystemExit) as info:
        train_tool.main([str(DET_DEMO), '--work-dir', str(tmp_path / 'wd'),
                         '--cfg-options',
                         f'train_dataloader.dataset.data_root={tmp_path}/no'])
    message = info.value.code
    assert message.startswith(f"error: train_dataloader: '{tmp_path}/no' "
                              'does not exist')
    assert 'COCO layout: annotations/instances_train2017.json' in message
    assert 'ImageNet' not in message and '\n' not in message


@pytest.fixture
def ade_dataset(tmp_path, demo_data):
    """A training set of the mmseg demo config on a copy of the demo ADE
    data, built by mmseg with mmumae's checks in its pipeline."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    root = tmp_path / 'ade'
    shutil.copytree(demo_data / 'ade' / 'ADEChallengeData2016', root)
    cfg = Config.fromfile(SEG_DEMO)
    cfg.train_dataloader.dataset.data_root = str(root)
    steps = [s['type'] for s in cfg.train_dataloader.dataset.pipeline]
    assert steps[1:3] == ['LoadAnnotations', 'CheckSegMap']
    init_default_scope('mmseg')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    dataset[0]  # a good sample passes
    return dataset


def test_ade_label_map_of_another_size(ade_dataset):
    info = ade_dataset.get_data_info(0)
    seg = Image.open(info['seg_map_path'])
    w, h = seg.size
    seg.resize((w // 2, h // 2), Image.NEAREST).save(info['seg_map_path'])
    with pytest.raises(RunError) as err:
        ade_dataset[0]
    assert str(err.value) == (
        f'label map {info["seg_map_path"]} is {w // 2}x{h // 2} but its '
        f'image {info["img_path"]} is {w}x{h}; regenerate the label map at '
        'the size of its image.')


def test_ade_label_above_150(ade_dataset):
    info = ade_dataset.get_data_info(0)
    labels = np.array(Image.open(info['seg_map_path']))
    labels[:4, :4] = 199
    Image.fromarray(labels).save(info['seg_map_path'])
    with pytest.raises(RunError) as err:
        ade_dataset[0]
    assert str(err.value).startswith(
        f'label map {info["seg_map_path"]} holds label 199 (the model has '
        '150 classes, 1..150 in the file, 0 = ignored)')
