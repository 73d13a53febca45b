"""What the UM Swin forward hands to its attention, observed in a real
forward pass: the position bias of the tokens' original coordinates at every
stage (scaled to that stage), the shifted-window and padding masks, and the
SM token before the patch-embed norm.

The attention inputs are recorded at ``scaled_dot_product_attention``; the
position MLP is set to the identity so that the bias it hands on *is* the
log-spaced coordinate difference of every query/key pair.
"""
import pytest
import torch
from handoff_helpers import (AttentionRecorder, expected_window_terms,
                             grid_coords, kept_in_block_order, log_spaced,
                             original_token_coords, set_identity_position_mlp,
                             um_masks)

import mmumae  # noqa: F401
from mmumae.models.backbones import UMSwinTransformer

#: 2 stages of 2 blocks (plain + shifted), 2 heads: head 0 carries the row
#: difference, head 1 the column difference.
TWO_STAGE = dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2])
BLOCKED = -50.  # bias values are |log(1 + d)| < 4; masks add -100 or -inf


def _swin(window_size: int) -> UMSwinTransformer:
    torch.manual_seed(0)
    model = UMSwinTransformer(arch=TWO_STAGE, window_size=window_size,
                              drop_path_rate=0., out_indices=(0, 1))
    model.init_weights()
    for stage in model.stages:
        for blk in stage.blocks:
            set_identity_position_mlp(blk.attn)
    return model.eval()


def _constant_embedding_swin(scale_norm: bool) -> UMSwinTransformer:
    """A window-4 Swin whose patch embedding is zero: every real token is
    the patch norm's bias, every masked one patch_norm(mask_token)."""
    model = _swin(window_size=4)
    with torch.no_grad():
        model.patch_embed.weight.zero_()
        model.patch_embed.bias.zero_()
        if scale_norm:
            model.patch_norm.weight.uniform_(0.5, 2.)
        model.patch_norm.bias.normal_()
        model.mask_token.normal_()
    return model


def _stage0_input(model: UMSwinTransformer, *inputs) -> torch.Tensor:
    """The tokens the first block receives, as a (B, 16, 16, C) map."""
    seen = {}

    def grab(module, args):
        seen['x'] = args[0]

    handle = model.stages[0].blocks[0].register_forward_pre_hook(grab)
    model(*inputs)
    handle.remove()
    return seen['x'].reshape(inputs[0].shape[0], 16, 16, -1)


def _check_block(recorder, key, coords, ws, shift):
    """The recorded mask of block ``key`` = bias of the key-minus-query (or
    query-minus-key, for every pair alike) original-coordinate difference,
    plus exactly the expected blocked pairs."""
    rec = recorder.full_mask(key)  # (B, nW, heads, N, N)
    diff, blocked, real_q = expected_window_terms(coords, ws, shift)
    assert rec.shape[1] == blocked.shape[0], f'{key}: number of windows'
    got_blocked = rec[:, :, 0] < BLOCKED
    rows = real_q[None].expand(rec.shape[0], -1, -1)
    assert torch.equal(got_blocked[rows], blocked[None].expand_as(
        got_blocked)[rows]), f'{key}: wrong pairs blocked'
    allowed = ~blocked[None].expand_as(got_blocked) & rows[..., None]
    expected = log_spaced(diff).permute(0, 1, 4, 2, 3)  # (B, nW, 2, N, N)
    got = rec[:, :, :2]
    sign = 1. if torch.allclose(got[:, :, 0][allowed],
                                expected[:, :, 0][allowed],
                                atol=1e-5) else -1.
    for head in (0, 1):
        torch.testing.assert_close(
            got[:, :, head][allowed], sign * expected[:, :, head][allowed],
            atol=1e-5, rtol=1e-5, msg=lambda m: f'{key} head {head}: {m}')
    if rec.shape[2] > 2:
        assert (rec[:, :, 2:][allowed[:, :, None].expand_as(
            rec[:, :, 2:])] == 0).all()


def test_um_forward_biases_original_coordinates_at_every_stage(monkeypatch):
    """128 px: compact stage maps 16x16 then 8x8, windows 4, shift 2."""
    model = _swin(window_size=4)
    recorder = AttentionRecorder(model, monkeypatch)
    mask, sm = um_masks(2, 128, seed=1)
    model(torch.randn(2, 3, 128, 128), mask, sm)
    assert set(recorder.calls) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for stage in (0, 1):
        coords = original_token_coords(mask, 4, stage)
        assert coords.shape[1:3] == (16 // 2**stage, 16 // 2**stage)
        for block, shift in ((0, 0), (1, 2)):
            _check_block(recorder, (stage, block), coords, 4, shift)


def test_um_bias_is_not_the_compact_grid_bias(monkeypatch):
    """Sanity of the check above: compact-grid coordinates (what a forward
    ignoring the originals would use) give another bias for this mask."""
    model = _swin(window_size=4)
    recorder = AttentionRecorder(model, monkeypatch)
    mask, sm = um_masks(1, 128, seed=1)
    model(torch.randn(1, 3, 128, 128), mask, sm)
    # (an unshifted 4-token window holds one mask patch, where both agree)
    _check_block(recorder, (0, 0), grid_coords(1, 16, 16), 4, 0)
    with pytest.raises(AssertionError):
        _check_block(recorder, (0, 1), grid_coords(1, 16, 16), 4, 2)
    with pytest.raises(AssertionError):
        _check_block(recorder, (1, 0), grid_coords(1, 8, 8), 4, 0)
    # and the coordinates differ from the compact grid by more than the
    # offsets of whole blocks: the in-block positions of the kept patches
    kept = kept_in_block_order(mask)[0]
    assert len({(r % 2, c % 2) for r, c in kept}) == 4


def test_dense_forward_biases_the_grid_and_masks_padding_and_regions(
        monkeypatch):
    """80 px, window 8: stage 0 is 20x20 (padded to 24), stage 1 10x10
    (padded to 16); both shifted by 4 in the second block."""
    model = _swin(window_size=8)
    recorder = AttentionRecorder(model, monkeypatch)
    model(torch.randn(1, 3, 80, 80))
    for stage, size in ((0, 20), (1, 10)):
        coords = grid_coords(1, size, size)
        for block, shift in ((0, 0), (1, 4)):
            _check_block(recorder, (stage, block), coords, 8, shift)


@pytest.mark.parametrize('dense', [False, True], ids=['um', 'dense'])
def test_shifted_mask_blocks_exactly_the_pairs_from_different_regions(
        monkeypatch, dense):
    """Hand-checkable case: a 16x16 map, windows 8 shifted by 4. In the
    last window row/column the tokens of map rows 12-15 meet rows 0-3 only
    through the roll, so they must not attend to each other; within each
    part they must."""
    model = _swin(window_size=8)
    recorder = AttentionRecorder(model, monkeypatch)
    if dense:
        model(torch.randn(1, 3, 64, 64))
    else:
        mask, sm = um_masks(1, 128, seed=2)
        model(torch.randn(1, 3, 128, 128), mask, sm)
    blocked = recorder.full_mask((0, 1))[0, :, 0] < BLOCKED  # (4, 64, 64)
    assert blocked.shape == (4, 64, 64)
    assert not blocked[0].any()  # top-left window: one region
    # window 3 (bottom right) holds map rows 12..15, 0..3 (rolled)
    # and the same columns: four regions of 16 tokens each
    region = torch.tensor([[(r >= 4) * 2 + (c >= 4) for c in range(8)]
                           for r in range(8)]).flatten()
    assert torch.equal(blocked[3], region[:, None] != region[None, :])
    region = torch.tensor([[int(r >= 4)] * 8 for r in range(8)]).flatten()
    assert torch.equal(blocked[2], region[:, None] != region[None, :])
    assert torch.equal(blocked[1], region.view(8, 8).t().flatten()[:, None]
                       != region.view(8, 8).t().flatten()[None, :])
    # unshifted blocks see no mask at all (no padding at 64/128 px)
    assert not (recorder.full_mask((0, 0)) < BLOCKED).any()
    # stage 1 is 8x8: the window covers the map, which is not shifted
    covering = recorder.full_mask((1, 1))
    assert covering.shape[1] == 1 and covering.shape[-1] == 64
    assert not (covering < BLOCKED).any()


def test_sm_tokens_are_the_mask_token_passed_through_the_patch_norm():
    """Zero patch embedding: every real token is patch_norm(0) = its bias,
    every SM token patch_norm(mask_token), at the compact positions of the
    SM patches."""
    model = _constant_embedding_swin(scale_norm=True)
    mask, sm = um_masks(2, 128, seed=3)
    # compact stage-0 map, raster
    x = _stage0_input(model, torch.randn(2, 3, 128, 128), mask, sm)
    real = model.patch_norm.bias.detach()
    token = model.patch_norm(model.mask_token.detach().view(1, -1))[0]
    assert not torch.allclose(token, model.mask_token.detach().view(-1))
    for n, kept in enumerate(kept_in_block_order(mask)):
        for k, (pr, pc) in enumerate(kept):
            qr, qc = divmod(k, 4)
            want = token if sm[n, pr, pc] else real
            cell = x[n, qr * 4:qr * 4 + 4, qc * 4:qc * 4 + 4]
            torch.testing.assert_close(cell, want.expand_as(cell))


def test_simmim_masked_patches_become_the_normalised_mask_token():
    """SimMIM mode (mask only): the full 16x16 token grid of a 64-px image;
    the 16 tokens of every masked 16-px patch are patch_norm(mask_token)."""
    model = _constant_embedding_swin(scale_norm=False)
    torch.manual_seed(1)
    mask = torch.rand(2, 4, 4) < 0.5
    x = _stage0_input(model, torch.randn(2, 3, 64, 64), mask)
    token = model.patch_norm(model.mask_token.detach().view(1, -1))[0]
    for n in range(2):
        for i in range(4):
            for j in range(4):
                want = token if mask[n, i, j] else model.patch_norm.bias
                cell = x[n, 4 * i:4 * i + 4, 4 * j:4 * j + 4]
                torch.testing.assert_close(cell,
                                           want.detach().expand_as(cell))
