"""tools/visualization/vis_reconstruction.py on a demo-config checkpoint."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import save_checkpoint

from mmumae.registry import MODELS
from tool_helpers import REPO, load_tool

vis_tool = load_tool(REPO / 'tools' / 'visualization' / 'vis_reconstruction.py',
                     'mmumae_vis_reconstruction')
CONFIG = str(REPO / 'configs' / 'ummae' / 'ummae_swin-mini_demo.py')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    cfg = Config.fromfile(CONFIG)
    model = MODELS.build(cfg.model)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('ckpt') / 'demo.pth')
    save_checkpoint(dict(meta=dict(), state_dict=model.state_dict()), path)
    return path


def test_figure_from_training_set_and_from_a_folder(tmp_path, demo_data,
                                                    checkpoint):
    root = f'train_dataloader.dataset.data_root={demo_data}/imagenet'
    out = vis_tool.main([CONFIG, checkpoint, '--num', '2', '--out',
                         str(tmp_path / 'a.png'), '--cfg-options', root])
    assert osp.getsize(out) > 10000
    folder = demo_data / 'imagenet' / 'val' / 'coffee'
    out = vis_tool.main([CONFIG, checkpoint, '--img-dir', str(folder),
                         '--num', '3', '--out', str(tmp_path / 'b.png')])
    assert osp.getsize(out) > 10000


def test_clear_errors(tmp_path, checkpoint):
    with pytest.raises(SystemExit, match='no images'):
        vis_tool.main([CONFIG, checkpoint, '--img-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match='does not exist'):
        vis_tool.main([CONFIG, checkpoint, '--cfg-options',
                       f'train_dataloader.dataset.data_root={tmp_path}/x'])
