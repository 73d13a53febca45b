"""Layer-wise lr decay of the fine-tuning configs on mmumae backbones.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` with the demo
fine-tuning configs' ``optim_wrapper`` (decay 0.85, tiny archs): every
parameter's lr multiplier is ``decay ** (num_layers - 1 - depth)``, with the
depths written out by hand for the two tiny archs (depths 1-1-2-1, so
``num_layers = 5 + 2 = 7``: stem 0, blocks 1..5, output norm and head 6).
"""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.engine import LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import MODELS

import mmumae  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def build(cfg: Config):
    """The config's model (not initialised) and its optimizer wrapper."""
    assert (cfg.optim_wrapper.constructor ==
            LearningRateDecayOptimWrapperConstructor.__name__)
    backbone = dict(cfg.model.backbone, init_cfg=None)
    model = MODELS.build(dict(cfg.model, backbone=backbone))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return model, build_optim_wrapper(model, cfg.optim_wrapper)


# Hand-written depth of representative parameters (blocks numbered 1..5
# through the stages; a later stage's entry (patch merging / embedding)
# takes the depth of that stage's first block, as in the reference).
SWIN_DEPTHS = {
    'backbone.patch_embed.weight': 0,
    'backbone.patch_norm.weight': 0,
    'backbone.mask_token': 0,
    'backbone.stages.0.blocks.0.attn.qkv.weight': 1,
    'backbone.stages.1.downsample.reduction.weight': 2,
    'backbone.stages.1.blocks.0.attn.rpe_mlp.0.weight': 2,
    'backbone.stages.2.downsample.norm.weight': 3,
    'backbone.stages.2.blocks.0.ffn.layers.0.0.weight': 3,
    'backbone.stages.2.blocks.1.norm2.bias': 4,
    'backbone.stages.3.blocks.0.attn.proj.weight': 5,
    'backbone.norm3.weight': 6,
    'head.fc.weight': 6,
}
PVT_DEPTHS = {
    'backbone.mask_token': 0,
    'backbone.pos_embed': 0,
    'backbone.stages.0.patch_embed.weight': 0,
    'backbone.stages.0.blocks.0.attn.sr.weight': 1,
    'backbone.stages.1.patch_embed.weight': 2,
    'backbone.stages.1.blocks.0.attn.kv.weight': 2,
    'backbone.stages.2.blocks.1.attn.q.weight': 4,
    'backbone.stages.3.patch_embed.bias': 5,
    'backbone.stages.3.blocks.0.ffn.layers.1.weight': 5,
    'backbone.norm3.bias': 6,
    'head.fc.bias': 6,
}


@pytest.mark.parametrize('family, depths', [('swin', SWIN_DEPTHS),
                                            ('pvt', PVT_DEPTHS)])
def test_layer_decay_multipliers(family, depths):
    cfg = Config.fromfile(
        REPO / f'configs/finetune/{family}-mini_ummae-pre_demo.py')
    model, wrapper = build(cfg)
    decay = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    assert decay == 0.85
    base_lr = cfg.optim_wrapper.optimizer.lr
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    # every trainable parameter has its own group
    assert set(groups) == {n for n, p in model.named_parameters()
                           if p.requires_grad}
    for name, depth in depths.items():
        assert groups[name]['lr'] == pytest.approx(base_lr *
                                                   decay**(6 - depth)), name
    # The same rule for every block: decay ** (7 - 1 - depth).
    for name, group in groups.items():
        parts = name.split('.')
        if parts[:2] == ['backbone', 'stages'] and parts[3] == 'blocks':
            stage, block = int(parts[2]), int(parts[4])
            depth = [0, 1, 2, 4][stage] + block + 1
            assert group['lr_scale'] == pytest.approx(decay**(6 - depth))
    # Weight decay: none on norms, biases, tokens, the position embedding.
    assert groups['backbone.stages.2.blocks.1.norm2.bias'][
        'weight_decay'] == 0
    assert groups['backbone.mask_token']['weight_decay'] == 0
    assert groups['head.fc.weight']['weight_decay'] == 0.05


def test_layer_decay_off_gives_one_lr():
    cfg = Config.fromfile(REPO / 'configs' / 'finetune' /
                          'swin-mini_ummae-pre_demo.py')
    cfg.optim_wrapper.paramwise_cfg.layer_decay_rate = 1.0
    _, wrapper = build(cfg)
    lrs = {g['lr'] for g in wrapper.optimizer.param_groups}
    assert lrs == {cfg.optim_wrapper.optimizer.lr}
