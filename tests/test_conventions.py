"""Numeric conventions of the official UM-MAE models, checked by hand.

See ``tests/data/official_checkpoint_layout/README.md``: the Swin position
MLP reads key minus query, LayerNorm eps 1e-6 outside the blocks, and the
sin-cos tables put the column in the first half of the channels.
"""
import logging
import math

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import save_checkpoint
from mmpretrain.models.utils import resize_pos_embed

import mmumae  # noqa: F401
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.models.backbones import UMPVT, UMSwinTransformer
from mmumae.models.utils import sincos_2d_colfirst
from mmumae.registry import MODELS

TINY_SWIN = dict(embed_dims=16, depths=[1, 2, 2, 1], num_heads=[1, 2, 2, 4])
TINY_PVT = dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])


def _um_masks(batch, size=128, seed=0):
    np.random.seed(seed)
    gen = UniformMaskGenerator(input_size=size)
    pairs = [gen.generate() for _ in range(batch)]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])),
            torch.from_numpy(np.stack([p[1] for p in pairs])))


def _mlp_of(attn, d):
    """The position MLP applied to one (row, col) difference by hand."""
    slog = [math.copysign(math.log1p(abs(v)), v) for v in d]
    return attn.rpe_mlp(torch.tensor(slog).view(1, 2, 1, 1)).flatten()


def test_swin_bias_reads_key_minus_query_on_the_regular_grid():
    torch.manual_seed(0)
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=4)
    model.init_weights()
    attn = model.stages[0].blocks[0].attn
    geo = model._stage_geometry(model._grid_coords(8, 8, 'cpu'), False, 1,
                                None, 0)
    bias = attn.position_bias(geo)  # (1, nW, heads, 16, 16)
    # window 0: query (0, 0) is token 0, key (1, 2) is token 1 * 4 + 2
    torch.testing.assert_close(bias[0, 0, :, 0, 6], _mlp_of(attn, (1, 2)))
    torch.testing.assert_close(bias[0, 0, :, 6, 0], _mlp_of(attn, (-1, -2)))
    assert not torch.allclose(_mlp_of(attn, (1, 2)), _mlp_of(attn, (-1, -2)))


def test_swin_bias_reads_key_minus_query_of_original_coordinates():
    torch.manual_seed(0)
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=8)
    model.init_weights()
    attn = model.stages[0].blocks[0].attn
    mask, sm = _um_masks(1)
    x = torch.randn(1, 3, 128, 128)
    coords = model.compact_input(x, mask, sm).coords  # (1, 16, 16, 2)
    geo = model._stage_geometry(coords, False, 1, 31, 0)
    bias = attn.position_bias(geo)
    # compact tokens (0, 0) and (5, 6) share window 0 but come from
    # different kept patches: the bias sees their original positions
    q, k = coords[0, 0, 0].tolist(), coords[0, 5, 6].tolist()
    d = (k[0] - q[0], k[1] - q[1])
    assert d != (5, 6)
    torch.testing.assert_close(bias[0, 0, :, 0, 5 * 8 + 6],
                               _mlp_of(attn, d))


def test_layernorm_eps_follow_the_reference():
    swin = UMSwinTransformer(arch=TINY_SWIN, out_indices=(0, 1, 2, 3))
    outer = [swin.patch_norm] + [s.downsample.norm for s in swin.stages[1:]]
    outer += [getattr(swin, f'norm{i}') for i in range(4)]
    assert [m.eps for m in outer] == [1e-6] * 8
    inner = [n for s in swin.stages for b in s.blocks
             for n in (b.norm1, b.norm2)]
    assert {m.eps for m in inner} == {1e-5}
    pvt = UMPVT(arch=TINY_PVT, out_indices=(2, 3))
    assert (pvt.norm2.eps, pvt.norm3.eps) == (1e-6, 1e-6)
    inner = [n for s in pvt.stages for b in s.blocks
             for n in (b.norm1, b.norm2, b.attn.norm)]
    assert {m.eps for m in inner} == {1e-5}
    dec = MODELS.build(dict(type='UMMAEPretrainDecoder', depth=2))
    eps = {m.eps for m in dec.modules()
           if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-6}


def test_sincos_table_is_column_first():
    h, w, c = 3, 5, 16
    table = sincos_2d_colfirst(h, w, c).view(h, w, c)
    first, second = table[..., :c // 2], table[..., c // 2:]
    # first half: the same for every row, different across columns
    assert torch.equal(first, first[:1].expand_as(first))
    assert not torch.equal(first[:, 0], first[:, 1])
    # second half: the same for every column
    assert torch.equal(second, second[:, :1].expand_as(second))
    omega = 1. / 10000**(torch.arange(4) / 4.)
    torch.testing.assert_close(table[2, 3, :4], torch.sin(3 * omega))
    torch.testing.assert_close(table[2, 3, 4:8], torch.cos(3 * omega))
    torch.testing.assert_close(table[2, 3, 8:12], torch.sin(2 * omega))


def test_pvt_and_decoder_use_the_column_first_table():
    pvt = UMPVT(arch=TINY_PVT)
    torch.testing.assert_close(
        pvt.position_embedding((4, 6), 'cpu', torch.float32),
        sincos_2d_colfirst(4, 6, 16))
    assert 'pos_embed' not in pvt.state_dict()
    dec = MODELS.build(dict(type='UMMAEPretrainDecoder', embed_dims=32,
                            num_heads=2, input_size=64))
    dec.init_weights()
    torch.testing.assert_close(dec.decoder_pos_embed[0],
                               sincos_2d_colfirst(4, 4, 32))


def test_learnable_pos_embed_loads_resizes_and_is_gathered(tmp_path):
    kw = dict(arch=TINY_PVT, sr_ratios=(2, 1, 1, 1))
    pvt = UMPVT(learnable_pos_embed=True, pretrain_img_size=64, **kw).eval()
    assert pvt.pos_embed.shape == (1, 256, 16)
    torch.testing.assert_close(pvt.pos_embed[0], sincos_2d_colfirst(16, 16,
                                                                    16))
    # a release-like checkpoint: its pos_embed is loaded as it is
    state = dict(pvt.state_dict(), pos_embed=torch.randn(1, 256, 16))
    ckpt = str(tmp_path / 'pvt.pth')
    save_checkpoint(dict(state_dict=state), ckpt)
    pvt = UMPVT(learnable_pos_embed=True, pretrain_img_size=64,
                init_cfg=dict(type='Pretrained', checkpoint=ckpt), **kw)
    pvt.init_weights()
    pvt.eval()
    torch.testing.assert_close(pvt.pos_embed, state['pos_embed'])
    # other grids: bicubic resize, as mmpretrain's resize_pos_embed
    torch.testing.assert_close(
        pvt.position_embedding((8, 12), 'cpu', torch.float32),
        resize_pos_embed(state['pos_embed'], (16, 16), (8, 12), 'bicubic',
                         0)[0])
    # UM mode gathers the learnable table at the original positions
    seen = {}

    def grab(module, args):
        seen['x'] = args[0]

    pvt.stages[0].blocks[0].register_forward_pre_hook(grab)
    torch.nn.init.zeros_(pvt.stages[0].patch_embed.weight)
    torch.nn.init.zeros_(pvt.stages[0].patch_embed.bias)
    mask, sm = _um_masks(1, size=64)
    pvt(torch.randn(1, 3, 64, 64), mask, torch.zeros_like(sm))
    coords = pvt.compact_input(torch.zeros(1, 3, 64, 64), mask, sm).coords
    idx = (coords[..., 0] * 16 + coords[..., 1]).flatten()
    torch.testing.assert_close(seen['x'][0], state['pos_embed'][0, idx])


def test_fixed_table_model_ignores_a_checkpoint_pos_embed(tmp_path):
    kw = dict(arch=TINY_PVT, sr_ratios=(2, 1, 1, 1))
    fixed = UMPVT(**kw).eval()
    state = dict(fixed.state_dict(), pos_embed=torch.randn(1, 256, 16))
    ckpt = str(tmp_path / 'pvt.pth')
    save_checkpoint(dict(state_dict=state), ckpt)
    loaded = UMPVT(init_cfg=dict(type='Pretrained', checkpoint=ckpt), **kw)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        loaded.init_weights()
    finally:
        logger.removeHandler(handler)
    assert any('pos_embed' in r.getMessage() and 'is ignored' in
               r.getMessage() for r in records)  # said, not silent
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded.eval()(x)[0], fixed(x)[0])
    # and a learnable model starts from the same table when the
    # checkpoint (of a fixed-table pre-training) has none
    save_checkpoint(dict(state_dict=fixed.state_dict()), ckpt)
    learn = UMPVT(learnable_pos_embed=True, pretrain_img_size=64,
                  init_cfg=dict(type='Pretrained', checkpoint=ckpt), **kw)
    learn.init_weights()
    torch.testing.assert_close(learn.eval()(x)[0], fixed(x)[0])


@pytest.mark.parametrize('learnable', [False, True])
def test_pvt_layer_depth_of_the_stem(learnable):
    pvt = UMPVT(arch=TINY_PVT, learnable_pos_embed=learnable,
                frozen_stages=0)
    pvt.train()
    assert pvt.get_layer_depth('pos_embed') == (0, 6)
    assert pvt.get_layer_depth('stages.1.patch_embed.weight') == (2, 6)
    if learnable:
        assert not pvt.pos_embed.requires_grad
