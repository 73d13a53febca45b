"""What the UM-MAE decoder and algorithm hand on: which compact patch every
expanded token stands for, which position embedding it gets, where each
prediction lands, and what the loss compares it with.

With all decoder-block parameters zero, every block is the identity (pre-norm
residual blocks), so the prediction of patch ``j`` is
``pred(norm(token_j))`` and the token of every patch can be checked against
its definition.
"""
import pytest
import torch
from handoff_helpers import (data_samples, kept_in_block_order,
                             norm_pix_target, um_masks)

import mmumae  # noqa: F401
from mmumae.registry import MODELS

SWIN = dict(type='UMSwinTransformer', window_size=4, drop_path_rate=0.,
            arch=dict(embed_dims=8, depths=[1, 1, 1, 1],
                      num_heads=[1, 1, 2, 2]))


def _decoder(upscale: int, pos_order: str = 'original'):
    torch.manual_seed(0)
    dec = MODELS.build(
        dict(type='UMMAEPretrainDecoder', in_channels=8, embed_dims=16,
             depth=1, num_heads=2, upscale=upscale, input_size=128,
             pos_order=pos_order))
    dec.init_weights()
    with torch.no_grad():
        for p in dec.decoder_blocks.parameters():
            p.zero_()
        dec.mask_token.normal_()
    return dec.eval()


def _expected_predictions(dec, x, mask, original_positions: bool):
    """Decoder output from the definitions (identity blocks).

    Compact patch (qr, qc) is sub-position (qr % r, qc % r) of the
    last-stage token (qr // r, qc // r): PixelShuffle takes its channels
    ``c * r * r + (qr % r) * r + qc % r``. It stands for the kept patch of
    block (qr, qc) and gets that patch's position embedding ('original') or
    the k-th kept patch in raster order ('reference'). Removed patches are
    the mask token plus their own embedding.
    """
    b, gh, gw = mask.shape
    r, d = dec.upscale, dec.embed_dims
    pos = dec.decoder_pos_embed.detach()[0]
    tokens = (pos + dec.mask_token.detach().view(d)).repeat(b, 1, 1)
    for n, kept in enumerate(kept_in_block_order(mask)):
        raster = sorted(pr * gw + pc for pr, pc in kept)
        for k, (pr, pc) in enumerate(kept):
            qr, qc = divmod(k, gw // 2)
            y = dec.decoder_embed(x[n, :, qr // r, qc // r])
            visible = y.view(d, r, r)[:, qr % r, qc % r]
            pid = pr * gw + pc if original_positions else raster[k]
            tokens[n, pr * gw + pc] = visible + pos[pid]
    return dec.decoder_pred(dec.decoder_norm(tokens))


@pytest.mark.parametrize('pos_order', ['original', 'reference'])
@pytest.mark.parametrize('upscale', [2, 1])
def test_each_patch_is_predicted_from_its_token_and_position(
        upscale, pos_order):
    """128 px: 8x8 patches, 16 kept on a 4x4 compact grid; the encoder map
    is 2x2 (pyramid, PixelShuffle 2) or 4x4 (ViT)."""
    dec = _decoder(upscale, pos_order)
    mask, _ = um_masks(2, 128, seed=4)
    kept = kept_in_block_order(mask)
    # the two orders differ for this mask (else the test proves nothing)
    assert any([r * 8 + c for r, c in k] != sorted(r * 8 + c for r, c in k)
               for k in kept)
    x = torch.randn(2, 8, 4 // upscale, 4 // upscale)
    with torch.no_grad():
        out = dec(x, mask)
        want = _expected_predictions(dec, x, mask, pos_order == 'original')
    assert out.shape == (2, 64, 16 * 16 * 3)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


def test_a_last_stage_token_feeds_exactly_its_four_compact_patches():
    """Locality of the PixelShuffle hand-off: changing last-stage token
    (a, b) changes the predictions of the kept patches of compact positions
    (2a + i, 2b + j) only (identity blocks: no mixing)."""
    dec = _decoder(2)
    mask, _ = um_masks(1, 128, seed=5)
    kept = kept_in_block_order(mask)[0]
    x = torch.randn(1, 8, 2, 2)
    with torch.no_grad():
        base = dec(x, mask)[0]
        for a in range(2):
            for b in range(2):
                y = x.clone()
                y[0, :, a, b] += 1.
                changed = (dec(y, mask)[0] - base).abs().sum(-1) > 1e-6
                want = {kept[(2 * a + i) * 4 + 2 * b + j]
                        for i in (0, 1) for j in (0, 1)}
                got = {divmod(int(p), 8) for p in changed.nonzero()}
                assert got == want, (a, b)


def _tiny_ummae():
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type='UMMAE', backbone=SWIN,
             neck=dict(type='UMMAEPretrainDecoder', in_channels=64,
                       embed_dims=16, depth=1, num_heads=2, input_size=128),
             head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                       loss=dict(type='PixelReconstructionLoss',
                                 criterion='L2'))))
    model.init_weights()
    return model


def test_loss_is_the_mse_to_norm_pix_of_the_us_removed_patches():
    """Predictions equal to the per-patch normalised pixels (raster order)
    on the 48 US-removed patches of each sample give loss 0 whatever is
    predicted on visible and SM patches; one removed patch off by 1 in
    every value gives 1 / (2 samples * 48 patches)."""
    model = _tiny_ummae()
    mask, sm = um_masks(2, 128, seed=10)
    assert sm.sum() == 8
    img = torch.randn(2, 3, 128, 128)
    pred = norm_pix_target(img, 16)
    pred[~mask.flatten(1)] += 7.  # visible and SM patches: anything
    model.neck.register_forward_hook(lambda m, args, out: pred)
    loss = model.loss(img, data_samples(mask, sm))['loss']
    assert float(loss) < 1e-10
    j = int(mask[1].flatten().nonzero()[5])
    pred[1, j] += 1.
    loss = model.loss(img, data_samples(mask, sm))['loss']
    torch.testing.assert_close(loss, torch.tensor(1 / 96.))


def test_loss_hands_the_last_map_and_the_us_mask_to_the_decoder():
    """The decoder's prediction in ``loss`` is the decoder applied to the
    backbone's last map of (mask, sm_mask), with the US mask."""
    model = _tiny_ummae().eval()
    mask, sm = um_masks(2, 128, seed=11)
    img = torch.randn(2, 3, 128, 128)
    seen = {}
    handle = model.neck.register_forward_hook(
        lambda m, args, out: seen.__setitem__('pred', out))
    model.loss(img, data_samples(mask, sm))
    handle.remove()
    with torch.no_grad():
        feats = model.backbone(img, mask, sm)
        assert feats[-1].shape == (2, 64, 2, 2)
        want = model.neck(feats[-1], mask)
    torch.testing.assert_close(seen['pred'], want)
    with torch.no_grad():  # SM is part of what the encoder gets
        other = model.neck(model.backbone(img, mask, sm & False)[-1], mask)
    assert not torch.allclose(seen['pred'], other)
