"""Non-square and odd-size inputs: what each size rule does, pinned.

- 224x160 trains for Swin and PVT (the paper configs at a tiny width) with
  a falling loss; mmpretrain's square-only head is refused at construction.
- The mask generator reads sizes as (H, W), never (W, H).
- A Swin window as large as the map (in its longer side) shrinks to the
  map, per axis, and stops shifting; otherwise it stays square and the map
  is padded.
- 224 px (7 kept patches a side): the decoder's extra row/column of tokens,
  which covers the encoder's zero padding, is cropped at the bottom/right.
- The Swin position bias, gathered from a table of multiples of each
  stage's coordinate quantum, equals the MLP evaluated on every pair.
"""
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

import mmumae  # noqa: F401
from mmumae.datasets.transforms import (RandomPatchMaskGenerator,
                                        UniformMaskGenerator)
from mmumae.models.backbones import UMSwinTransformer
from mmumae.models.backbones.um_swin import PositionMLPWindowAttention
from mmumae.models.heads import UMMAEPretrainHead
from mmumae.models.necks import UMMAEPretrainDecoder
from mmumae.models.utils import kept_patch_ids, to_windows
from mmumae.models.utils.window_geometry import stage_window
from mmumae.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'swin': ('ummae_swin-tiny-w8_8xb512-amp-coslr-200e_in1k-256px.py', {
        'model.backbone.arch': dict(_delete_=True, embed_dims=16,
                                    depths=[1, 1, 1, 1],
                                    num_heads=[1, 1, 2, 2]),
        'model.neck.in_channels': 128}),
    'pvt': ('ummae_pvt-small_8xb512-amp-coslr-200e_in1k-256px.py', {
        'model.backbone.arch': dict(_delete_=True, embed_dims=[8, 16, 16, 32],
                                    depths=[1, 1, 1, 1],
                                    num_heads=[1, 1, 2, 2],
                                    mlp_ratios=[2, 2, 2, 2]),
        'model.neck.in_channels': 32}),
}


def _model(family: str, size):
    name, tiny = CONFIGS[family]
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ummae', name))
    cfg.merge_from_dict(dict(tiny, **{
        'model.neck.embed_dims': 32, 'model.neck.num_heads': 2,
        'model.neck.depth': 1, 'model.neck.input_size': size}))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def _masks(n: int, size, seed: int = 0):
    np.random.seed(seed)
    gen = UniformMaskGenerator(input_size=size)
    drawn = [gen({}) for _ in range(n)]
    return (torch.stack([d['mask'] for d in drawn]),
            torch.stack([d['sm_mask'] for d in drawn]))


@pytest.mark.parametrize('size', [(224, 160), (160, 224)],
                         ids=['224x160', '160x224'])
@pytest.mark.parametrize('family', ['swin', 'pvt'])
def test_nonsquare_inputs_train(family, size):
    """The paper configs' model (UMMAEPretrainHead) at a non-square size:
    finite, falling loss through the mask generator's own masks."""
    model = _model(family, size)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x = torch.randn(4, 3, *size, generator=torch.Generator().manual_seed(0))
    losses = []
    for it in range(8):
        mask, sm = _masks(4, size, seed=it % 2)
        samples = [DataSample(mask=m, sm_mask=s) for m, s in zip(mask, sm)]
        loss = model.loss(x, samples)['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 1e-3, losses
    figure = model.reconstruct(x, samples)
    assert figure['reconstruction'].shape == x.shape


def test_square_only_head_is_refused_at_construction():
    cfg = dict(
        type='UMMAE',
        backbone=dict(type='UMSwinTransformer', arch=dict(
            embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
            window_size=8),
        neck=dict(type='UMMAEPretrainDecoder', in_channels=128,
                  embed_dims=32, depth=1, num_heads=2, input_size=(224, 160)),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')))
    with pytest.raises(ValueError, match="224x160 is not square.*"
                       "type='UMMAEPretrainHead'"):
        MODELS.build(cfg)
    MODELS.build(dict(cfg, head=dict(
        type='UMMAEPretrainHead', norm_pix=True, mask_patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2'))))


def test_head_patchifies_rows_then_columns():
    head = UMMAEPretrainHead(
        loss=dict(type='PixelReconstructionLoss', criterion='L2'),
        mask_patch_size=16)
    img = torch.randn(2, 3, 224, 160)
    patches = head.patchify(img)
    assert patches.shape == (2, 14 * 10, 16 * 16 * 3)
    # patch (r, c) is raster index r * 10 + c, pixels (row, col, channel)
    r, c = 3, 7
    crop = img[:, :, 16 * r:16 * r + 16, 16 * c:16 * c + 16]
    assert torch.equal(patches[:, r * 10 + c],
                       crop.permute(0, 2, 3, 1).reshape(2, -1))
    assert torch.equal(head.unpatchify(patches, (14, 10)), img)
    square = torch.randn(2, 3, 64, 64)
    stock = MODELS.build(dict(type='MAEPretrainHead', patch_size=16, loss=dict(
        type='PixelReconstructionLoss', criterion='L2')))
    assert torch.equal(head.patchify(square), stock.patchify(square))
    assert torch.equal(head.unpatchify(head.patchify(square)), square)
    with pytest.raises(ValueError, match='multiple of 16'):
        head.patchify(torch.randn(1, 3, 224, 150))


@pytest.mark.parametrize('cls,block', [(UniformMaskGenerator, 2),
                                       (RandomPatchMaskGenerator, 1)])
def test_mask_generators_read_height_then_width(cls, block):
    gen = cls(input_size=(224, 160))
    out = gen({'img': np.zeros((224, 160, 3), np.uint8)})  # H x W x C
    assert tuple(out['mask'].shape) == (14, 10)
    with pytest.raises(ValueError, match='the image is 160x224 but the mask '
                       'grid was built for input_size=224x160'):
        gen({'img': np.zeros((160, 224, 3), np.uint8)})
    with pytest.raises(ValueError, match=r'224x176 is not: use 224 \(H\), '
                       r'160 or 192 \(W\)' if block == 2 else '224x168'):
        cls(input_size=(224, 176 if block == 2 else 168))


def test_backbone_checks_the_mask_against_height_and_width():
    model = UMSwinTransformer(arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                                        num_heads=[1, 1, 1, 1]),
                              window_size=8)
    mask, sm = _masks(1, (224, 160))
    assert model(torch.randn(1, 3, 224, 160), mask, sm)[0].shape[-2:] == \
        (4, 3)  # 7x5 kept patches -> 4x3 after padding
    with pytest.raises(ValueError, match='image size 160x224 does not match '
                       'the 14x10 mask grid'):
        model(torch.randn(1, 3, 160, 224), mask, sm)


@pytest.mark.parametrize('hw,shifted,window,shift', [
    ((7, 5), True, (7, 5), 0),      # longer side fits: shrink per axis
    ((5, 8), True, (5, 8), 0),      # equal to the window: shrink, no shift
    ((4, 3), False, (4, 3), 0),
    ((16, 6), True, (8, 8), 4),     # longer side exceeds: square, padded
    ((6, 16), True, (8, 8), 4),
    ((6, 16), False, (8, 8), 0),
    ((28, 20), True, (8, 8), 4),
])
def test_window_shrink_rule_for_nonsquare_maps(hw, shifted, window, shift):
    assert stage_window(hw, 8, shifted) == (window, shift)


def test_nonsquare_um_forward_uses_those_windows():
    """224x160 UM mode, window 8: the geometry every block really gets."""
    model = UMSwinTransformer(arch=dict(embed_dims=16, depths=[2, 2, 2, 2],
                                        num_heads=[1, 1, 1, 1]),
                              window_size=8)
    seen = []

    def record(module, args):
        seen.append((tuple(args[0].shape[1:3]), args[1].window,
                     args[1].shift, args[1].pad))

    for m in model.modules():
        if isinstance(m, PositionMLPWindowAttention):
            m.register_forward_pre_hook(record)
    mask, sm = _masks(1, (224, 160))
    model(torch.randn(1, 3, 224, 160), mask, sm)
    # compact 112x80 px -> token maps 28x20, 14x10, 7x5, 4x3
    assert seen == [
        ((28, 20), (8, 8), 0, (4, 4)), ((28, 20), (8, 8), 4, (4, 4)),
        ((14, 10), (8, 8), 0, (2, 6)), ((14, 10), (8, 8), 4, (2, 6)),
        ((7, 5), (7, 5), 0, (0, 0)), ((7, 5), (7, 5), 0, (0, 0)),
        ((4, 3), (4, 3), 0, (0, 0)), ((4, 3), (4, 3), 0, (0, 0)),
    ]


@pytest.mark.parametrize('size', [224, (224, 160)], ids=['224', '224x160'])
def test_decoder_crops_the_padding_tokens_at_bottom_right(size):
    """7 kept patches a side (5 across at 160): the encoder's last map is
    4x4 (4x3) after zero-padding at the bottom/right; PixelShuffle(2) makes
    8x8 (8x6) tokens, token (r, c) over kept patch (r, c), and the decoder
    crops the last row/column. With no decoder block, a change of map
    position (i, j) changes exactly the patches of kept blocks (2i + a,
    2j + b) that exist."""
    hw = (size, size) if isinstance(size, int) else size
    ch, cw = hw[0] // 32, hw[1] // 32
    torch.manual_seed(0)
    dec = UMMAEPretrainDecoder(in_channels=8, embed_dims=16, depth=0,
                               num_heads=2, input_size=size).eval()
    dec.init_weights()
    mask, _ = _masks(1, size)
    kept = kept_patch_ids(mask)[0]  # block order: block (r, c) at r*cw+c
    x = torch.randn(1, 8, -(-ch // 2), -(-cw // 2))
    base = dec(x, mask)[0]
    for i, j in [(0, 0), (x.shape[2] - 1, x.shape[3] - 1), (1, 0)]:
        moved = x.clone()
        moved[:, :, i, j] += 1.
        changed = (dec(moved, mask)[0] - base).abs().sum(-1) > 1e-6
        expect = torch.zeros_like(changed)
        for a in range(2):
            for b in range(2):
                r, c = 2 * i + a, 2 * j + b
                if r < ch and c < cw:
                    expect[kept[r * cw + c]] = True
        assert torch.equal(changed, expect), (i, j)
        assert not changed[mask[0].flatten()].any()  # removed: mask token


def _log_coords(d: torch.Tensor) -> torch.Tensor:
    return torch.sign(d) * torch.log1p(d.abs())


@pytest.mark.parametrize('mode', ['um', 'dense'])
def test_position_bias_equals_the_mlp_on_every_pair(mode):
    """Per stage, the gathered bias equals the MLP of ``sign(d) *
    log(1 + |d|)`` of every pair's coordinate difference (key minus query,
    stage units). It fails when a stage's quantum (gcd(2**i, t) in UM
    mode, 2**i on the regular grid) is wrong: the table index would floor
    differences that are not multiples of it."""
    torch.manual_seed(0)
    model = UMSwinTransformer(arch=dict(embed_dims=16, depths=[2, 2, 2, 2],
                                        num_heads=[1, 1, 2, 2]),
                              window_size=8).eval()
    model.init_weights()
    with torch.no_grad():  # a position MLP far from linear
        for m in model.modules():
            if isinstance(m, PositionMLPWindowAttention):
                for p in m.rpe_mlp.parameters():
                    p.normal_(0, 1)
    seen = []

    def record(module, args):
        seen.append((module, args[1]))

    for m in model.modules():
        if isinstance(m, PositionMLPWindowAttention):
            m.register_forward_pre_hook(record)
    size = 256 if mode == 'um' else 128
    x = torch.randn(2, 3, size, size)
    masks = _masks(2, size) if mode == 'um' else (None, None)
    with torch.no_grad():
        model(x, *masks)
        coords = model.token_coordinates(x, *masks)
        stage_of = {id(blk.attn): i for i, st in enumerate(model.stages)
                    for blk in st.blocks}
        stages = set()
        for attn, geo in seen:
            i = stage_of[id(attn)]
            stages.add(i)
            assert geo.pad == (0, 0)  # maps of whole windows here
            cw = to_windows(coords[i], geo)  # (Bc, nW, N, 2)
            d = cw[:, :, None, :, :] - cw[:, :, :, None, :]  # k - q
            feats = _log_coords(d).permute(0, 1, 4, 2, 3)  # (.., 2, N, N)
            bc, nw = feats.shape[:2]
            direct = attn.rpe_mlp(feats.flatten(0, 1))
            direct = direct.view(bc, nw, -1, *direct.shape[-2:])
            got = attn.position_bias(geo)
            if geo.attn_mask is not None:  # pairs that attend: the wrapped
                # pairs of a shifted window are masked (and clamped)
                attends = geo.attn_mask[0] == 0  # (nW, 1, N, N)
                got, direct = got * attends, direct * attends
            torch.testing.assert_close(got, direct, rtol=1e-5, atol=1e-5,
                                       msg=f'stage {i}')
            if mode == 'um' and i > 0:
                step = math.gcd(2**i, model.tokens_per_patch) / 2**i
                assert (d.abs() % step).max() < 1e-6  # off the regular grid
    assert stages == {0, 1, 2, 3}


@pytest.mark.parametrize('family', ['swin', 'pvt'])
def test_odd_compact_maps_are_padded_at_the_bottom_right(family):
    """At 224 px the encoder's compact maps turn odd (7 x 7 before the last
    downsampling: Swin's patch merging, PVT's stride-2 embedding); the
    zeros go below and right of the map, as in the reference, so every
    merged 2 x 2 cell starts at an even row and column of the map."""
    model = _model(family, 224).eval()
    backbone = model.backbone
    convs = [m for name, m in backbone.named_modules()
             if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    seen = []
    for conv in convs:
        conv.register_forward_hook(
            lambda m, args, out: seen.append(args[0].detach()))
    mask, sm = _masks(1, 224)
    with torch.no_grad():
        backbone(torch.randn(1, 3, 224, 224), mask, sm)
    padded = [x for x in seen if x.shape[-2:] == (8, 8)]
    assert padded, [tuple(x.shape) for x in seen]
    for x in padded:
        assert x[..., 7, :].abs().sum() == 0  # the added bottom row
        assert x[..., :, 7].abs().sum() == 0  # the added right column
        assert x[..., :7, :7].abs().amin(dim=(-2, -1)).gt(0).any()
        assert x[..., 0, :7].abs().sum() > 0 and x[..., :7, 0].abs().sum() > 0
