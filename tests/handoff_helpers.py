"""Helpers of the hand-off tests (``test_handoffs_*.py``).

Expectations are computed here from first principles, with plain loops and
no mmumae helper, so that a bug in a helper cannot hide in both the code and
its test.
"""
from functools import partial
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from mmumae.datasets.transforms import UniformMaskGenerator


def um_masks(batch: int, size: int, seed: int = 0,
             sm_ratio: float = 0.25) -> Tuple[torch.Tensor, torch.Tensor]:
    """``batch`` (mask, sm_mask) pairs of 16-px patches for ``size`` px."""
    np.random.seed(seed)
    gen = UniformMaskGenerator(input_size=size, sm_ratio=sm_ratio)
    pairs = [gen.generate() for _ in range(batch)]
    return (torch.from_numpy(np.stack([p[0] for p in pairs])),
            torch.from_numpy(np.stack([p[1] for p in pairs])))


def data_samples(mask: torch.Tensor, sm: torch.Tensor) -> List[DataSample]:
    """What ``PackInputs(algorithm_keys=['mask', 'sm_mask'])`` hands on."""
    out = []
    for m, s in zip(mask, sm):
        ds = DataSample()
        ds.set_field(m, 'mask')
        ds.set_field(s, 'sm_mask')
        out.append(ds)
    return out


def kept_in_block_order(mask: torch.Tensor) -> List[List[Tuple[int, int]]]:
    """(row, col) of the kept patch of every 2x2 block, blocks in raster
    order: the patch that compact position k stands for."""
    out = []
    for m in mask.tolist():
        gh, gw = len(m), len(m[0])
        kept = []
        for bi in range(gh // 2):
            for bj in range(gw // 2):
                cell = [(2 * bi + a, 2 * bj + b) for a in (0, 1)
                        for b in (0, 1) if not m[2 * bi + a][2 * bj + b]]
                assert len(cell) == 1, 'not a uniform-sampling mask'
                kept.append(cell[0])
        out.append(kept)
    return out


def original_token_coords(mask: torch.Tensor, tokens_per_patch: int,
                          stage: int) -> torch.Tensor:
    """Original coordinates, in stage-``stage`` token units, of the tokens of
    the compact map at that stage, ``(B, H_s, W_s, 2)`` float.

    Stage 0: compact token (r, c) lies at offset (r % t, c % t) of the kept
    patch of compact position (r // t, c // t). Each later stage keeps the
    top-left token of every 2x2 group and halves the coordinate.
    """
    t = tokens_per_patch
    kept = kept_in_block_order(mask)
    b, gh, gw = mask.shape
    ch, cw = gh // 2, gw // 2
    full = torch.zeros(b, ch * t, cw * t, 2)
    for n in range(b):
        for k, (pr, pc) in enumerate(kept[n]):
            qr, qc = divmod(k, cw)
            for a in range(t):
                for c in range(t):
                    full[n, qr * t + a, qc * t + c] = torch.tensor(
                        [pr * t + a, pc * t + c], dtype=torch.float)
    step = 2**stage
    return full[:, ::step, ::step] / step


def grid_coords(b: int, h: int, w: int) -> torch.Tensor:
    """Regular grid ``(b, h, w, 2)``: dense mode's coordinates."""
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    return torch.stack([rows, cols], -1).float()[None].expand(b, -1, -1, -1)


def log_spaced(d: torch.Tensor) -> torch.Tensor:
    return torch.sign(d) * torch.log1p(d.abs())


def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, H, W, k)`` -> ``(B, nW, ws*ws, k)``, windows and tokens in
    raster order (Swin's partition)."""
    b, h, w, k = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, k).transpose(2, 3)
    return x.reshape(b, -1, ws * ws, k)


def expected_window_terms(coords: torch.Tensor, ws: int, shift: int
                          ) -> Tuple[torch.Tensor, torch.Tensor,
                                     torch.Tensor]:
    """What the attention of a (shifted) window layout must receive.

    Args:
        coords (Tensor): ``(B, H, W, 2)`` original coordinates in this
            stage's token units.
        ws (int): Window size. shift (int): cyclic shift, 0 for none.

    Returns:
        tuple: ``diff (B, nW, N, N, 2)`` key-minus-query coordinate
        differences; ``blocked (nW, N, N)`` pairs that must not attend (keys
        in the padding, or, in shifted windows, tokens that are not within
        one window of each other on the map: they only meet through the
        cyclic roll); ``real_query (nW, N)``.
    """
    b, h, w, _ = coords.shape
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    padded_coords = torch.zeros(b, hp, wp, 2)
    padded_coords[:, :h, :w] = coords
    pos = grid_coords(1, hp, wp)
    is_pad = ((pos[..., 0] >= h) | (pos[..., 1] >= w)).float()[..., None]
    if shift:
        padded_coords, pos, is_pad = (
            torch.roll(t, (-shift, -shift), dims=(1, 2))
            for t in (padded_coords, pos, is_pad))
    cw = _windows(padded_coords, ws)
    diff = cw[:, :, None, :, :] - cw[:, :, :, None, :]  # [i, j] = c_j - c_i
    pw = _windows(pos, ws)[0]
    far = ((pw[:, None, :, :] - pw[:, :, None, :]).abs() >= ws).any(-1)
    pad = _windows(is_pad, ws)[0, ..., 0] > 0
    blocked = pad[:, None, :].expand_as(far).clone()
    if shift:
        blocked |= far
    return diff, blocked, ~pad


class AttentionRecorder:
    """Records the inputs of every ``scaled_dot_product_attention`` call made
    inside the given blocks, keyed by ``(stage, block)``.

    Args:
        model: A backbone with ``stages[i].blocks[j]``.
        monkeypatch: pytest's fixture (the wrapper is undone after the test).
    """

    def __init__(self, model, monkeypatch) -> None:
        self.calls: Dict[tuple, dict] = {}
        self.current: Optional[tuple] = None
        for i, stage in enumerate(model.stages):
            for j, blk in enumerate(stage.blocks):
                blk.register_forward_pre_hook(partial(self._enter, (i, j)))
                blk.register_forward_hook(self._leave)
        original = F.scaled_dot_product_attention

        def record(q, k, v, *args, **kwargs):
            if self.current is not None:
                mask = kwargs.get('attn_mask', args[0] if args else None)
                self.calls[self.current] = dict(
                    q=q.detach(), k=k.detach(), v=v.detach(),
                    attn_mask=None if mask is None else mask.detach())
            return original(q, k, v, *args, **kwargs)

        monkeypatch.setattr(F, 'scaled_dot_product_attention', record)

    def _enter(self, key, module, args) -> None:
        self.current = key

    def _leave(self, module, args, output) -> None:
        self.current = None

    def full_mask(self, key) -> torch.Tensor:
        """The additive attention mask of a call, ``(B, nW, heads, N, N)``."""
        call = self.calls[key]
        shape = (*call['q'].shape[:-1], call['k'].shape[-2])
        if call['attn_mask'] is None:
            return torch.zeros(shape)
        return torch.broadcast_to(call['attn_mask'], shape)


def set_identity_position_mlp(attn) -> None:
    """Make a Swin position MLP output its input: head 0 the log-spaced row
    difference, head 1 the column difference, other heads 0 (ReLU pairs
    +x, -x carry the sign)."""
    layers = [m for m in attn.rpe_mlp.modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    first, last = layers[0], layers[-1]
    with torch.no_grad():
        for m in (first, last):
            m.weight.zero_()
            m.bias.zero_()
        w1 = first.weight.view(first.weight.shape[0], 2)
        w1[0, 0], w1[1, 0], w1[2, 1], w1[3, 1] = 1., -1., 1., -1.
        w2 = last.weight.view(last.weight.shape[0], -1)
        w2[0, 0], w2[0, 1], w2[1, 2], w2[1, 3] = 1., -1., 1., -1.


def norm_pix_target(img: torch.Tensor, p: int) -> torch.Tensor:
    """Per-patch normalised pixels ``(B, L, p*p*C)``, patches in raster
    order, pixels as (row, col, channel) inside a patch; mean and unbiased
    variance of each patch, eps 1e-6 (mmpretrain's MAE target)."""
    b, c, h, w = img.shape
    x = img.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    x = x.reshape(b, (h // p) * (w // p), p * p * c)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True)
    return (x - mean) / (var + 1e-6)**.5
