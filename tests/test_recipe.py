"""The recipe of docs/transfer.md for an existing mmdet project.

mmdet's own ``swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``, inherited as
shipped, plus the three lines of the doc (``custom_imports``, ``_delete_``
the backbone, ``type='mmpretrain.UMSwinTransformer'``): the detector builds
in mmdet's scope with mmumae's class, loads a ``UMSwinTransformer``
checkpoint through ``init_cfg`` and runs. The stock class cannot take that
checkpoint: the stock-layout converter refuses it, naming why.
"""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import save_checkpoint
from mmpretrain.registry import MODELS
from tool_helpers import load_tool

import mmumae  # noqa: F401
from mmumae.models.backbones import UMSwinTransformer

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / 'docs' / 'transfer.md'
STOCK_DET = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'


def recipe_from_doc() -> str:
    """The mmdet recipe block of docs/transfer.md, as written there."""
    text = DOC.read_text()
    section = text[text.index('## Stock Swin classes cannot take'):]
    block = re.search(r'```python\n(.*?)```', section, re.S).group(1)
    return '\n'.join(line[3:] if line.startswith('   ') else line
                     for line in block.splitlines()) + '\n'


@pytest.fixture(scope='module')
def backbone_ckpt(tmp_path_factory):
    """A full-size Swin-T UMSwinTransformer backbone, off its init."""
    torch.manual_seed(0)
    backbone = UMSwinTransformer(arch='tiny', window_size=16,
                                 out_indices=(3, ))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for v in backbone.state_dict().values():
            v.add_(0.05 * torch.randn(v.shape, generator=gen))
    cfg = Config(dict(model=dict(backbone=dict(
        type='UMSwinTransformer', arch='tiny', window_size=16,
        out_indices=(3, )))))
    state = {'backbone.' + k: v for k, v in backbone.state_dict().items()}
    path = tmp_path_factory.mktemp('recipe') / 'BACKBONE.pth'
    save_checkpoint(dict(meta=dict(cfg=cfg.pretty_text), state_dict=state),
                    str(path))
    return path, state


def test_recipe_on_mmdet_stock_config(backbone_ckpt, tmp_path):
    path, state = backbone_ckpt
    recipe = recipe_from_doc()
    assert recipe.startswith(f"_base_ = ['{STOCK_DET}']")
    assert "type='mmpretrain.UMSwinTransformer'" in recipe
    cfg_file = tmp_path / 'mask-rcnn_umswin.py'
    cfg_file.write_text(recipe.replace('BACKBONE.pth', str(path)))
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.custom_imports.imports == ['mmumae']
    stock = get_config(STOCK_DET)
    assert stock.model.neck == cfg.model.neck  # the rest is the stock one
    assert stock.model.roi_head == cfg.model.roi_head
    assert 'convert_weights' not in cfg.model.backbone  # _delete_ worked

    from mmdet.registry import MODELS as DET
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET.build(cfg.model)
    assert type(model.backbone) is UMSwinTransformer
    assert type(model).__name__ == 'MaskRCNN'
    model.backbone.init_weights()
    own = model.backbone.state_dict()
    for k, v in own.items():
        if re.match(r'norm[012]\.', k):  # new output norms of the FPN
            continue
        assert torch.equal(v, state['backbone.' + k]), k
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [
        (256, 32, 32), (256, 16, 16), (256, 8, 8), (256, 4, 4), (256, 2, 2)]


def test_stock_layout_refuses_reference_weights(backbone_ckpt, tmp_path):
    path, _ = backbone_ckpt
    tool = load_tool(REPO / 'tools' / 'model_converters' /
                     'ummae_to_backbone.py', 'ummae_to_backbone')
    out = tmp_path / 'stock.pth'
    with pytest.raises(tool.ConversionError,
                       match='UMSwinTransformer, whose weights do not fit a '
                       'stock Swin'):
        tool.convert(str(path), str(out), stock_config=STOCK_DET)
    assert not out.exists()
    # and the stock class itself has none of the reference's tensors
    # where they would go
    ref = set(UMSwinTransformer(arch='tiny').state_dict())
    stock = set(MODELS.build(dict(type='SwinTransformer', arch='tiny'))
                .state_dict())
    assert not any('rpe_mlp' in k for k in stock)
    assert not any('relative_position_bias_table' in k for k in ref)
    assert ('stages.1.downsample.reduction.bias' in ref and
            'stages.1.downsample.reduction.bias' not in stock)
