"""The shared model skeleton: pre-norm block, block-order ids, layer depth."""
import numpy as np
import pytest
import torch
from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from test_ummae import _samples, _tiny_ummae

import mmumae  # noqa: F401
from mmumae.models import algorithms, backbones, necks
from mmumae.models.backbones import UMPVT, UMSwinTransformer
from mmumae.models.utils import PreNormBlock, kept_patch_ids

TINY_SWIN = dict(embed_dims=16, depths=[1, 2, 2, 1], num_heads=[1, 2, 2, 4])
TINY_PVT = dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])


class _Scale(torch.nn.Module):
    """A stand-in attention: multiplies by 3 (checks the wiring only)."""

    def forward(self, x, extra):
        return 3 * x + extra


def test_pre_norm_block_is_the_two_residual_branches():
    torch.manual_seed(0)
    blk = PreNormBlock(8, _Scale(), 16).eval()
    for p in blk.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 5, 8)
    y = x + 3 * blk.norm1(x) + 1.
    ffn = blk.ffn.layers
    hidden = torch.nn.functional.gelu(ffn[0][0](blk.norm2(y)))
    expected = y + ffn[1](hidden)
    torch.testing.assert_close(blk(x, 1.), expected)


@pytest.mark.parametrize('cls,arch', [(UMSwinTransformer, TINY_SWIN),
                                      (UMPVT, TINY_PVT)])
def test_both_families_use_the_shared_block(cls, arch):
    model = cls(arch=arch)
    blocks = [b for s in model.stages for b in s.blocks]
    assert len(blocks) == sum(arch['depths'])
    assert all(type(b) is PreNormBlock for b in blocks)
    assert all(type(b.ffn).__name__ == 'FFN' for b in blocks)


def test_block_order_ids_are_computed_once_per_batch(monkeypatch):
    torch.manual_seed(0)
    model = _tiny_ummae(size=128).eval()  # no drop path: comparable runs
    samples = _samples(2, size=128)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return kept_patch_ids(*args, **kwargs)

    for module in (algorithms.ummae, backbones.base, necks.ummae_decoder):
        monkeypatch.setattr(module, 'kept_patch_ids', counted)
    x = torch.randn(2, 3, 128, 128)
    loss = model.loss(x, samples)['loss']
    assert len(calls) == 1
    # a backbone or decoder called alone computes them itself, the same way
    mask = torch.stack([s.mask for s in samples])
    sm = torch.stack([s.sm_mask for s in samples])
    ids = kept_patch_ids(mask)
    feats = model.backbone(x, mask, sm)
    torch.testing.assert_close(feats[-1],
                               model.backbone(x, mask, sm, kept_ids=ids)[-1])
    pred = model.neck(feats[-1], mask)
    torch.testing.assert_close(pred, model.neck(feats[-1], mask, ids))
    torch.testing.assert_close(
        model.head.loss(pred, x, mask.flatten(1).float()), loss)


@pytest.mark.parametrize('cls,arch,depths', [
    (UMSwinTransformer, TINY_SWIN, {
        'backbone.patch_norm.weight': 0,
        'backbone.stages.1.downsample.reduction.weight': 2,
        'backbone.stages.1.blocks.1.ffn.layers.0.0.weight': 3,
        'backbone.stages.2.blocks.0.attn.rpe_mlp.0.weight': 4,
        'backbone.norm3.weight': 7,
        'head.fc.weight': 7,
    }),
    (UMPVT, TINY_PVT, {
        'backbone.mask_token': 0,
        'backbone.stages.0.patch_embed.weight': 0,
        'backbone.stages.2.patch_embed.weight': 3,
        'backbone.stages.2.blocks.0.ffn.layers.1.weight': 3,
        'backbone.norm3.weight': 5,
    }),
])
def test_layer_decay_groups_through_mmpretrain(cls, arch, depths):
    """mmpretrain's LearningRateDecayOptimWrapperConstructor reads every
    parameter's depth through ``get_layer_depth``."""
    name = cls.__name__
    model = PRETRAIN_MODELS.build(
        dict(type='ImageClassifier',
             backbone=dict(type=name, arch=arch, out_indices=(3, )),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=3,
                       in_channels=64 if cls is UMPVT else 128)))
    wrapper = LearningRateDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=1., weight_decay=0.05)),
        dict(layer_decay_rate=0.5))(model)
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    num_layers = sum(arch['depths']) + 2
    for param, depth in depths.items():
        assert groups[param]['layer_id'] == depth, param
        assert groups[param]['lr'] == 0.5**(num_layers - depth - 1)
    assert len(groups) == len(list(model.parameters()))
    assert np.isclose(groups['backbone.norm3.weight']['lr'], 1.)
