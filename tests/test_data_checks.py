"""Missing data roots fail early with the fix in the message."""
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from runsafe import RunError, check_dataset_paths

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAPER_CFG = osp.join(
    REPO, 'configs/ummae/'
    'ummae_swin-tiny-w8_8xb512-amp-coslr-200e_in1k-256px.py')


def test_missing_data_root_names_path_and_fix(tmp_path):
    cfg = Config.fromfile(PAPER_CFG)
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(RunError, match='nowhere.*--cfg-options') as info:
        check_dataset_paths(cfg)
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / 'nowhere').mkdir()
    with pytest.raises(RunError, match='meta/train.txt'):
        check_dataset_paths(cfg)
    (tmp_path / 'nowhere' / 'meta').mkdir()
    ann = tmp_path / 'nowhere' / 'meta' / 'train.txt'
    ann.write_text('\n')
    with pytest.raises(RunError, match='train.txt is empty'):
        check_dataset_paths(cfg)
    ann.write_text('train/a/1.JPEG 0\n')
    check_dataset_paths(cfg)


def test_train_tool_stops_before_building_anything(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', PAPER_CFG, '--work-dir',
         str(tmp_path), '--cfg-options',
         f'train_dataloader.dataset.data_root={tmp_path}/missing'],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert 'does not exist' in proc.stderr and 'make data' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_image_folders_behind_symlinks_hold_images(tmp_path):
    """Class folders that are links to folders elsewhere (a data set shared
    between disks) count, as mmpretrain's CustomDataset reads them; a link
    to a folder without images still counts as empty."""
    real = tmp_path / 'disk2' / 'cats'
    real.mkdir(parents=True)
    (real / '0.JPEG').write_bytes(b'\xff\xd8\xff')
    root = tmp_path / 'train'
    root.mkdir()
    (root / 'cats').symlink_to(real, target_is_directory=True)
    cfg = dict(train_dataloader=dict(dataset=dict(
        type='CustomDataset', data_root=str(root))))
    check_dataset_paths(cfg)
    (real / '0.JPEG').unlink()
    with pytest.raises(RunError, match=f'{root} holds no images'):
        check_dataset_paths(cfg)
