"""What the UM PVT and ViT forwards hand on, observed in a real forward:
PVT's keys/values (pooled by the stage's ratio, 1x1 conv, LayerNorm), the
un-normalised SM token plus the embedding of the original position; ViT's
secondary masking and kept tokens in block order."""
import pytest
import torch
import torch.nn.functional as F
from handoff_helpers import AttentionRecorder, kept_in_block_order, um_masks

import mmumae  # noqa: F401
from mmumae.models.backbones import UMPVT, UMSwinTransformer
from mmumae.registry import MODELS

PVT = dict(embed_dims=[16, 16, 32, 32], depths=[1, 1, 1, 1],
           num_heads=[2, 2, 2, 2], mlp_ratios=[2, 2, 2, 2])
SWIN = dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2])


def _pvt(sr_ratios=(4, 2, 1, 1)) -> UMPVT:
    torch.manual_seed(0)
    model = UMPVT(arch=PVT, sr_ratios=sr_ratios, drop_path_rate=0.)
    model.init_weights()
    with torch.no_grad():  # non-trivial norms and mask token
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 2.)
                m.bias.normal_()
        model.mask_token.normal_()
    return model.eval()


@pytest.mark.parametrize('um', [True, False], ids=['um', 'dense'])
def test_pvt_keys_and_values_are_the_normalised_pooled_map(monkeypatch, um):
    """UM at 128 px: compact stage maps 16, 8, 4, 2 with sr 4, 2, 1, 1;
    dense at 80x112: maps 20x28, 10x14, 5x7, 3x4 with sr 8, 4, 2, 1 (partial
    border cells pooled too: 3x4 keys at every stage). At every stage
    k, v = kv(LN(conv1x1(avgpool_sr(x)))) and q = q(x) for the normalised
    block input x."""
    srs = (4, 2, 1, 1) if um else (8, 4, 2, 1)
    model = _pvt(srs)
    recorder = AttentionRecorder(model, monkeypatch)
    inputs = {}
    for i, stage in enumerate(model.stages):
        stage.blocks[0].attn.register_forward_pre_hook(
            lambda m, args, i=i: inputs.__setitem__(i, args[0]))
    if um:
        mask, sm = um_masks(2, 128, seed=6)
        model(torch.randn(2, 3, 128, 128), mask, sm)
        sizes, keys = [(16, 16), (8, 8), (4, 4), (2, 2)], [16, 16, 16, 4]
    else:
        model(torch.randn(2, 3, 80, 112))
        sizes, keys = [(20, 28), (10, 14), (5, 7), (3, 4)], [12] * 4
    for i, ((h, w), sr) in enumerate(zip(sizes, srs)):
        attn = model.stages[i].blocks[0].attn
        x = inputs[i]  # (B, h*w, C)
        b, n, c = x.shape
        assert n == h * w
        pooled = x.transpose(1, 2).reshape(b, c, h, w)
        if sr > 1:
            pooled = F.avg_pool2d(pooled, sr, ceil_mode=True)
        reduced = attn.sr(pooled).flatten(2).transpose(1, 2)
        normed = F.layer_norm(reduced, (c, ), attn.norm.weight,
                              attn.norm.bias, attn.norm.eps)
        k, v = attn.kv(normed).view(b, -1, 2, 2, c // 2).permute(
            2, 0, 3, 1, 4)
        q = attn.q(x).view(b, n, 2, c // 2).transpose(1, 2)
        call = recorder.calls[(i, 0)]
        assert call['k'].shape[-2] == keys[i], f'stage {i}: sr'
        torch.testing.assert_close(call['k'], k, msg=f'stage {i} keys')
        torch.testing.assert_close(call['q'], q, msg=f'stage {i} queries')
        torch.testing.assert_close(call['v'], v, msg=f'stage {i} values')
        # the norm matters: without it the keys differ
        raw = attn.kv(reduced).view(b, -1, 2, 2, c // 2).permute(
            2, 0, 3, 1, 4)[0]
        assert not torch.allclose(raw, k, atol=1e-3)


def test_pvt_stage1_tokens_are_sm_token_plus_original_position():
    """Zero patch embedding: token k of the compact map is the position
    embedding of its original token, plus the raw (un-normalised) mask
    token where its patch is secondary-masked."""
    model = _pvt()
    with torch.no_grad():
        model.stages[0].patch_embed.weight.zero_()
        model.stages[0].patch_embed.bias.zero_()
    seen = {}
    model.stages[0].blocks[0].register_forward_pre_hook(
        lambda m, args: seen.__setitem__('x', args[0]))
    mask, sm = um_masks(2, 128, seed=7)
    model(torch.randn(2, 3, 128, 128), mask, sm)
    pe = model.position_embedding((32, 32), 'cpu', torch.float32)
    token = model.mask_token.detach().view(-1)
    x = seen['x'].view(2, 16, 16, -1)
    for n, kept in enumerate(kept_in_block_order(mask)):
        for k, (pr, pc) in enumerate(kept):
            qr, qc = divmod(k, 4)
            for a in range(4):
                for c in range(4):
                    want = pe[(pr * 4 + a) * 32 + pc * 4 + c]
                    if sm[n, pr, pc]:
                        want = want + token
                    torch.testing.assert_close(x[n, qr * 4 + a, qc * 4 + c],
                                               want)


def _vit():
    torch.manual_seed(0)
    vit = MODELS.build(
        dict(type='UMVisionTransformer', img_size=128, patch_size=16,
             arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                       feedforward_channels=64)))
    vit.init_weights()
    with torch.no_grad():
        vit.mask_token.normal_()
    vit.eval()
    return vit


def test_vit_encodes_kept_patches_in_block_order_with_the_sm_token():
    """Zero patch embedding: the first layer sees the class token and, for
    compact position k, the position embedding of the kept patch of block
    k, plus the mask token when that patch is secondary-masked."""
    vit = _vit()
    with torch.no_grad():
        vit.patch_embed.projection.weight.zero_()
        vit.patch_embed.projection.bias.zero_()
    seen = {}
    vit.layers[0].register_forward_pre_hook(
        lambda m, args: seen.__setitem__('x', args[0]))
    mask, sm = um_masks(2, 128, seed=8)
    out = vit(torch.randn(2, 3, 128, 128), mask, sm)
    assert out[0].shape == (2, 32, 4, 4)
    x, pos = seen['x'], vit.pos_embed.detach()[0]
    torch.testing.assert_close(
        x[:, 0], (vit.cls_token.detach()[0, 0] + pos[0]).expand(2, -1))
    assert x.shape[1] == 17
    token = vit.mask_token.detach().view(-1)
    for n, kept in enumerate(kept_in_block_order(mask)):
        for k, (pr, pc) in enumerate(kept):
            want = pos[1 + pr * 8 + pc] + (token if sm[n, pr, pc] else 0)
            torch.testing.assert_close(x[n, 1 + k], want)


def test_vit_output_ignores_the_pixels_of_sm_and_removed_patches():
    vit = _vit()
    mask, sm = um_masks(1, 128, seed=9)
    assert sm.sum() == 4
    pix = (mask | sm).repeat_interleave(16, 1).repeat_interleave(16, 2)
    x = torch.randn(1, 3, 128, 128)
    y = torch.where(pix[:, None], torch.randn_like(x), x)
    torch.testing.assert_close(vit(x, mask, sm)[0], vit(y, mask, sm)[0])
    z = torch.where(pix[:, None], x, torch.randn_like(x))
    assert not torch.allclose(vit(x, mask, sm)[0], vit(z, mask, sm)[0])


@pytest.mark.parametrize('family', ['swin', 'pvt'])
def test_dense_outputs_are_the_normalised_stage_maps_channels_first(family):
    """What mmdet/mmseg receive: for every out index, norm_i of the stage's
    channels-last map, as (B, C, H, W) of a non-square input (64x96)."""
    if family == 'swin':
        model = UMSwinTransformer(arch=SWIN, window_size=4,
                                  out_indices=(0, 1, 2, 3))
    else:
        model = UMPVT(arch=PVT, out_indices=(0, 1, 2, 3))
    model.init_weights()
    with torch.no_grad():
        for i in range(4):
            getattr(model, f'norm{i}').weight.uniform_(0.5, 2.)
            getattr(model, f'norm{i}').bias.normal_()
    model.eval()
    maps = {}
    for i, stage in enumerate(model.stages):
        stage.register_forward_hook(lambda m, a, out, i=i: maps.__setitem__(
            i, out[0] if isinstance(out, tuple) else out))
    outs = model(torch.randn(1, 3, 64, 96))
    for i, out in enumerate(outs):
        h, w = 64 // (4 * 2**i), 96 // (4 * 2**i)
        stage_map = maps[i].reshape(1, h, w, -1)
        want = getattr(model, f'norm{i}')(stage_map).permute(0, 3, 1, 2)
        torch.testing.assert_close(out, want)
