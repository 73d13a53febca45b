"""UM backbones: the shared encoder interface, compact gather,
coordinates, bias, modes."""
import numpy as np
import pytest
import torch

import mmumae  # noqa: F401
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.models.backbones import (UMPVT, UMEncoderMixin,
                                     UMStockSwinTransformer,
                                     UMSwinTransformer, UMVisionTransformer)
from mmumae.models.utils import (gather_patches, kept_patch_ids,
                                 window_partition)

TINY_SWIN = dict(embed_dims=16, depths=[1, 2, 2, 1], num_heads=[1, 2, 2, 4])
TINY_PVT = dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])


def _um_masks(batch, size=64, seed=0):
    np.random.seed(seed)
    gen = UniformMaskGenerator(input_size=size)
    pairs = [gen.generate() for _ in range(batch)]
    mask = torch.from_numpy(np.stack([p[0] for p in pairs]))
    sm = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return mask, sm


def _position_image(b, size):
    """Channel 0 = row, channel 1 = column, channel 2 = sample index."""
    r = torch.arange(size).view(1, size, 1).expand(b, size, size)
    c = torch.arange(size).view(1, 1, size).expand(b, size, size)
    s = torch.arange(b).view(b, 1, 1).expand(b, size, size)
    return torch.stack([r, c, s], 1).float()


def test_compact_gather_returns_exactly_the_kept_pixels_in_block_order():
    mask, _ = _um_masks(3, size=128)
    img = _position_image(3, 128)
    ids = kept_patch_ids(mask)
    compact = gather_patches(img, ids, 16, (4, 4))
    assert compact.shape == (3, 3, 64, 64)
    for b in range(3):
        for bi in range(4):
            for bj in range(4):
                patch = compact[b, :, bi * 16:(bi + 1) * 16,
                                bj * 16:(bj + 1) * 16]
                r0, c0 = int(patch[0, 0, 0]), int(patch[1, 0, 0])
                # it is the top-left of one whole original patch ...
                assert r0 % 16 == 0 and c0 % 16 == 0
                assert torch.equal(patch, img[b, :, r0:r0 + 16, c0:c0 + 16])
                # ... that lies in block (bi, bj) and was kept by US
                assert (r0 // 32, c0 // 32) == (bi, bj)
                assert not mask[b, r0 // 16, c0 // 16]
    # every kept patch appears once: 16 of the 64 patches per sample
    assert ids.shape == (3, 16) and (~mask).flatten(1).sum(1).eq(16).all()


def test_swin_coordinates_are_original_positions_at_every_stage():
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=4)
    mask, sm = _um_masks(2, size=128)
    img = _position_image(2, 128)
    ids = kept_patch_ids(mask)
    compact = gather_patches(img, ids, 16, (4, 4))
    coords = model.token_coordinates(img, mask, sm)
    for i, c in enumerate(coords):
        stride = 4 * 2**i  # pixels per token at stage i, on the compact image
        h, w = c.shape[1:3]
        assert (h, w) == (64 // stride, 64 // stride)
        for b in range(2):
            top_left = compact[b, :2, ::stride, ::stride].permute(1, 2, 0)
            # original pixel position / original token size at this stage
            assert torch.equal(c[b], top_left / stride)
    dense = model.token_coordinates(img)
    assert torch.equal(dense[1][0, 3, 5], torch.tensor([3., 5.]))


def test_position_bias_is_the_mlp_of_every_pair_difference():
    torch.manual_seed(0)
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=4)
    model.init_weights()
    mask, sm = _um_masks(2, size=128)
    img = torch.randn(2, 3, 128, 128)
    _, _, coords, full_hw = model.compact_input(img, mask, sm)
    attn = model.stages[0].blocks[0].attn
    for shifted in (False, True):
        geo = model._stage_geometry(coords, shifted, 1, max(full_hw) - 1, 0)
        fast = attn.position_bias(geo)  # (B, nW, heads, N, N)
        c = coords
        if geo.shift:
            c = torch.roll(c, (-geo.shift, -geo.shift), dims=(1, 2))
        cw = window_partition(c, geo.window).float()
        d = cw[:, :, None] - cw[:, :, :, None]  # key minus query
        d = torch.sign(d) * torch.log1p(d.abs())  # (B, nW, N, N, 2)
        naive = attn.rpe_mlp(d.permute(0, 1, 4, 2, 3).flatten(0, 1))
        naive = naive.view(*d.shape[:2], -1, *d.shape[2:4])
        torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)
        # identical gradients too
        g = torch.randn_like(fast)
        gf = torch.autograd.grad((fast * g).sum(), attn.rpe_mlp.parameters())
        gn = torch.autograd.grad((naive * g).sum(), attn.rpe_mlp.parameters())
        for a, b in zip(gf, gn):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('cls,arch,extra', [
    (UMSwinTransformer, TINY_SWIN, dict(window_size=4)),
    (UMPVT, TINY_PVT, dict(sr_ratios=(2, 1, 1, 1))),
])
def test_um_mode_runs_on_the_compact_grid(cls, arch, extra):
    torch.manual_seed(0)
    model = cls(arch=arch, out_indices=(0, 3), **extra)
    model.init_weights()
    mask, sm = _um_masks(2)
    outs = model(torch.randn(2, 3, 64, 64), mask, sm)
    # 64 px -> 32 px compact image -> stage maps 8x8 ... 1x1
    assert [tuple(o.shape[2:]) for o in outs] == [(8, 8), (1, 1)]
    (outs[-1] * torch.randn_like(outs[-1])).sum().backward()
    assert model.mask_token.grad is not None
    assert model.mask_token.grad.abs().sum() > 0  # SM tokens were used


def test_secondary_masked_patches_only_contribute_the_mask_token():
    torch.manual_seed(0)
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=4).eval()
    mask, sm = _um_masks(1, size=64)
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    pix_sm = sm.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, None]
    pix_us = mask.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, None]
    y = torch.where(pix_sm | pix_us, torch.randn_like(y), y)
    torch.testing.assert_close(model(x, mask, sm)[0], model(y, mask, sm)[0])
    z = torch.where(~(pix_sm | pix_us), torch.randn_like(x), x)
    assert not torch.allclose(model(x, mask, sm)[0], model(z, mask, sm)[0])


@pytest.mark.parametrize('cls,arch,extra', [
    (UMSwinTransformer, TINY_SWIN, dict(window_size=4)),
    (UMPVT, TINY_PVT, dict()),
])
def test_dense_mode_multiscale_any_size(cls, arch, extra):
    model = cls(arch=arch, out_indices=(0, 1, 2, 3), **extra).eval()
    for h, w in [(64, 96), (96, 64), (80, 112)]:
        outs = model(torch.randn(1, 3, h, w))
        assert [o.shape[1] for o in outs] == list(model.num_features)
        assert tuple(outs[0].shape[2:]) == (h // 4, w // 4)
        assert tuple(outs[3].shape[2:]) == (-(-h // 32), -(-w // 32))
    # SimMIM mode: full grid, same shapes as dense
    mask = torch.rand(2, 4, 4) < 0.75
    outs = model(torch.randn(2, 3, 64, 64), mask)
    assert tuple(outs[0].shape[2:]) == (16, 16)


def test_swin_dense_bias_is_shared_and_windows_pad_with_masked_keys():
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=4)
    coords = model._grid_coords(6, 10, 'cpu')
    geo = model._stage_geometry(coords, True, 1, 3, 0)
    assert geo.rel_index.shape[0] == 1  # one geometry for the whole batch
    assert geo.pad == (2, 2) and geo.attn_mask is not None
    # without shift: exactly the padded keys are blocked, for every query
    geo = model._stage_geometry(coords, False, 1, 3, 0)
    padded = torch.zeros(8, 12, dtype=torch.bool)
    padded[6:, :] = True
    padded[:, 10:] = True
    key_pad = window_partition(padded[None, ..., None], (4, 4))[0, ..., 0]
    mask = geo.attn_mask[0, :, 0]  # (nW, N, N)
    assert torch.equal(mask < 0, key_pad[:, None, :].expand_as(mask))
    # query (0, 0) and key (1, 1) of the first window: offset key - query =
    # (1, 1), table index (dy + radius) * (2 * radius + 1) + dx + radius
    assert geo.rel_index[0, 0, 0, 5] == (1 + 3) * 7 + (1 + 3)
    assert geo.rel_index[0, 0, 5, 0] == (-1 + 3) * 7 + (-1 + 3)


def test_frozen_stages_and_layer_depth():
    model = UMSwinTransformer(arch=TINY_SWIN, frozen_stages=1,
                              out_indices=(0, 1, 2, 3))
    model.train()
    assert not model.patch_embed.weight.requires_grad
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert not model.stages[1].training and model.stages[2].training
    assert model.get_layer_depth('backbone.patch_embed.weight',
                                 'backbone.') == (0, 8)
    assert model.get_layer_depth('backbone.stages.1.blocks.1.attn.qkv.weight',
                                 'backbone.') == (3, 8)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (7, 8)
    pvt = UMPVT(arch=TINY_PVT, frozen_stages=0)
    pvt.train()
    assert not any(p.requires_grad for p in pvt.stages[0].parameters())
    assert pvt.get_layer_depth('stages.2.blocks.0.q.weight') == (3, 6)


def test_mask_errors_are_clear():
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=4)
    x = torch.randn(1, 3, 64, 64)
    mask, sm = _um_masks(1, size=64)
    with pytest.raises(ValueError, match='implies 8-px mask patches'):
        model(x, torch.zeros(1, 8, 8, dtype=torch.bool), sm)
    with pytest.raises(ValueError, match='does not match the 3x3 mask grid'):
        model(x, torch.zeros(1, 3, 3, dtype=torch.bool), sm)
    bad = torch.zeros(1, 4, 4, dtype=torch.bool)  # keeps everything
    with pytest.raises(ValueError, match='not a uniform-sampling mask'):
        model(x, bad, sm)
    with pytest.raises(ValueError, match=r'shape \(B, H/p, W/p\)'):
        model(x, mask[0], sm[0])
    with pytest.raises(ValueError, match='does not match'):
        UMPVT(arch=TINY_PVT)(torch.randn(1, 3, 64, 64),
                             torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(KeyError, match='arch'):
        UMSwinTransformer(arch='huge')


def test_dense_geometry_is_built_once_per_input_size():
    """The backbone's one size cache: a dense input size adds its
    geometries once (not again for another batch size); UM batches of one
    size add their size-only masks and tables once, not per batch."""
    model = UMSwinTransformer(arch=TINY_SWIN, window_size=4).eval()
    x = torch.randn(2, 3, 64, 96)
    ref = model(x)[0]
    n = len(model._size_cache)
    assert n > 0
    out = model(torch.cat([x, x]))[0]  # other batch size, same geometry
    assert len(model._size_cache) == n
    torch.testing.assert_close(out[:2], ref)
    model(torch.randn(1, 3, 96, 64))
    m = len(model._size_cache)
    assert m > n
    model(torch.randn(2, 3, 64, 64), *_um_masks(2))
    k = len(model._size_cache)
    model(torch.randn(2, 3, 64, 64), *_um_masks(2, seed=1))
    assert len(model._size_cache) == k


@pytest.mark.parametrize('cls,arch,extra', [
    (UMSwinTransformer, TINY_SWIN, dict(window_size=4)),
    (UMPVT, TINY_PVT, dict(sr_ratios=(2, 1, 1, 1))),
])
def test_gradient_checkpointing_gives_the_same_gradients(cls, arch, extra):
    torch.manual_seed(0)
    plain = cls(arch=arch, drop_path_rate=0., **extra)
    plain.init_weights()
    ckpt = cls(arch=arch, with_cp=True, drop_path_rate=0., **extra)
    ckpt.load_state_dict(plain.state_dict())
    mask, sm = _um_masks(2)
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        model.train()
        out = model(x, mask, sm)[-1]
        weight = torch.linspace(-1, 1, out.numel()).view_as(out)
        (out * weight).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('cls,arch', [(UMSwinTransformer, TINY_SWIN),
                                      (UMPVT, TINY_PVT)])
def test_dense_training_gives_every_parameter_a_gradient(cls, arch):
    """DDP (find_unused_parameters=False) needs a gradient for every
    trainable parameter, the unused-in-dense-mode mask token included."""
    model = cls(arch=arch, out_indices=(0, 1, 2, 3)).train()
    outs = model(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert torch.equal(model.mask_token.grad,
                       torch.zeros_like(model.mask_token))
    model.eval()
    ref = model(torch.randn(1, 3, 64, 64))  # eval: no token in the graph
    assert ref[0].grad_fn is not None


def test_pvt_tokens_carry_the_embedding_of_their_original_position():
    model = UMPVT(arch=TINY_PVT, sr_ratios=(2, 1, 1, 1)).eval()
    torch.nn.init.zeros_(model.stages[0].patch_embed.weight)
    torch.nn.init.zeros_(model.stages[0].patch_embed.bias)
    seen = {}

    def grab(module, args):
        seen['x'] = args[0]

    model.stages[0].blocks[0].register_forward_pre_hook(grab)
    mask, sm = _um_masks(2, size=128)
    model(torch.randn(2, 3, 128, 128), mask, sm)
    # zero patch embedding: stage-1 input = mask token at SM + sin-cos pos
    pe = model.position_embedding((32, 32), 'cpu', torch.float32)
    coords = model.compact_input(torch.zeros(2, 3, 128, 128), mask, sm)
    expected = pe[(coords.coords[..., 0] * 32 + coords.coords[..., 1])
                  .flatten(1)]
    sm_tok = coords.sm_tokens.flatten(1)
    expected = torch.where(sm_tok[..., None], expected + model.mask_token,
                           expected)
    torch.testing.assert_close(seen['x'], expected)


TINY_VIT = dict(embed_dims=16, num_layers=1, num_heads=2,
                feedforward_channels=32)
ENCODERS = {
    'swin': (UMSwinTransformer, dict(arch=TINY_SWIN, window_size=4)),
    'pvt': (UMPVT, dict(arch=TINY_PVT, sr_ratios=(2, 1, 1, 1))),
    'stock-swin': (UMStockSwinTransformer, dict(
        arch=TINY_SWIN, img_size=64, stage_cfgs=[
            dict(block_cfgs=dict(window_size=w)) for w in (16, 8, 4, 2)])),
    'vit': (UMVisionTransformer, dict(arch=TINY_VIT, img_size=64)),
}


@pytest.mark.parametrize('name', sorted(ENCODERS))
def test_every_um_encoder_has_the_same_interface(name):
    """Each backbone states its mask patch, the stride and channels of the
    map its UM mode returns (checked against that map), gathers the
    compact input, and starts from its ``default_init_cfg``."""
    cls, kwargs = ENCODERS[name]
    model = cls(**kwargs)
    assert isinstance(model, UMEncoderMixin)
    assert model.init_cfg == cls.default_init_cfg
    model.init_weights()
    assert model.mask_patch_size == 16
    x = torch.randn(2, 3, 64, 64)
    mask, sm = _um_masks(2)
    c = model.compact_input(x, mask, sm)
    assert c.image.shape == (2, 3, 32, 32) and c.full_hw == (
        64 // model.patch_size, ) * 2
    model.eval()
    out = model(x, mask, sm)[-1]
    side = 32 // model.out_stride
    assert out.shape == (2, model.out_channels, side, side)
