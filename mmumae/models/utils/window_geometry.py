"""Window geometry of the UM Swin backbone: windows, shifts, bias indices.

Coordinates are the *original* (row, col) of every token in first-stage
token units (4 px for patch size 4), so the relative position bias sees
true image distances even on the compact UM-MAE grid.

Quantum and radius. At stage ``i`` tokens are the ``[::2, ::2]``
subsample of stage ``i - 1``. On the regular (dense) grid any two tokens of
stage ``i`` differ by a multiple of ``2**i``, and inside one window by at
most ``window - 1`` stage-``i`` steps. On the compact grid the kept mask
patches start at multiples of ``t`` (tokens per mask patch, 4 for 16-px
patches) and the tokens inside one patch are ``2**i`` apart, so every
difference is a multiple of ``quantum = gcd(2**i, t)`` and at most
``extent - 1`` (the full grid's side). Differences divided by the quantum
are therefore integers in ``[-radius, radius]``: the position MLP is
evaluated once on the ``(2 * radius + 1)**2`` table of them (its input is
``k * quantum / 2**i`` in stage units, log-spaced) and gathered per pair.
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: Additive attention mask value for pairs that must not attend (as Swin).
MASK_VALUE = -100.0


class WindowGeometry(NamedTuple):
    """Everything the blocks of a stage share for one window layout.

    Attributes:
        window (tuple): Window size (h, w).
        shift (int): Cyclic shift (0 = none).
        pad (tuple): Padding (bottom, right) added to the map.
        rel_index (Tensor): ``(Bc, nW, N, N)`` index into the bias table of
            every (query, key) pair; ``Bc`` is 1 on the regular grid.
        attn_mask (Tensor | None): ``(1, nW, 1, N, N)`` additive mask of
            shifted regions and padded keys.
        table_coords (Tensor): ``(1, 2, S, S)`` log-spaced differences the
            position MLP is evaluated on.
    """
    window: Tuple[int, int]
    shift: int
    pad: Tuple[int, int]
    rel_index: Tensor
    attn_mask: Optional[Tensor]
    table_coords: Tensor


class SizeCache:
    """A small bounded cache of tensors that depend only on sizes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: Dict[tuple, object] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple, build: Callable[[], object]):
        """Return the cached value of ``key``, building it when missing."""
        value = self._items.get(key)
        if value is None:
            if len(self._items) >= self.capacity:
                self._items.clear()
            value = self._items[key] = build()
        return value


def window_partition(x: Tensor, window: Tuple[int, int]) -> Tensor:
    """``(B, H, W, ...)`` -> ``(B, nW, wh * ww, ...)``."""
    b, h, w = x.shape[:3]
    wh, ww = window
    rest = x.shape[3:]
    x = x.view(b, h // wh, wh, w // ww, ww, *rest)
    x = x.transpose(2, 3)
    return x.reshape(b, (h // wh) * (w // ww), wh * ww, *rest)


def to_windows(x: Tensor, geo: WindowGeometry) -> Tensor:
    """Pad, shift and partition a ``(B, H, W, C)`` map into windows."""
    if geo.pad[0] or geo.pad[1]:
        x = F.pad(x, (0, 0, 0, geo.pad[1], 0, geo.pad[0]))
    if geo.shift:
        x = torch.roll(x, (-geo.shift, -geo.shift), dims=(1, 2))
    return window_partition(x, geo.window)


def from_windows(x: Tensor, geo: WindowGeometry,
                 hw: Tuple[int, int]) -> Tensor:
    """Inverse of :func:`to_windows`: ``(B, nW, N, C)`` -> ``(B, H, W, C)``."""
    b, _, _, c = x.shape
    wh, ww = geo.window
    hp, wp = hw[0] + geo.pad[0], hw[1] + geo.pad[1]
    x = x.view(b, hp // wh, wp // ww, wh, ww, c).transpose(2, 3)
    x = x.reshape(b, hp, wp, c)
    if geo.shift:
        x = torch.roll(x, (geo.shift, geo.shift), dims=(1, 2))
    return x[:, :hw[0], :hw[1]]


def stage_window(hw: Tuple[int, int], window_size: int,
                 shifted: bool) -> Tuple[Tuple[int, int], int]:
    """Window and shift of a map; a window covering it shrinks, no shift."""
    if max(hw) <= window_size:
        return (hw[0], hw[1]), 0
    return (window_size, window_size), (window_size // 2 if shifted else 0)


def region_mask(h: int, w: int, window: Tuple[int, int], shift: int,
                device) -> Tensor:
    """``(1, nW, 1, N, N)`` additive mask: shifted regions, padded keys."""
    hp, wp = h + (-h) % window[0], w + (-w) % window[1]
    region = torch.zeros(hp, wp, device=device)
    if shift:
        cuts_h = (slice(0, -window[0]), slice(-window[0], -shift),
                  slice(-shift, None))
        cuts_w = (slice(0, -window[1]), slice(-window[1], -shift),
                  slice(-shift, None))
        for rid, (sh, sw) in enumerate((a, b) for a in cuts_h
                                       for b in cuts_w):
            region[sh, sw] = rid
    padded = torch.zeros(hp, wp, dtype=torch.bool, device=device)
    padded[h:, :] = True
    padded[:, w:] = True
    if shift:  # the region ids already live in the shifted frame
        padded = torch.roll(padded, (-shift, -shift), dims=(0, 1))
    rw = window_partition(region[None, ..., None], window)[0, ..., 0]
    pw = window_partition(padded[None, ..., None], window)[0, ..., 0]
    blocked = (rw[:, :, None] != rw[:, None, :]) | pw[:, None, :]
    mask = torch.zeros(blocked.shape, device=device)
    return mask.masked_fill(blocked, MASK_VALUE)[None, :, None]


def table_coords(radius: int, quantum: int, stage: int, device) -> Tensor:
    """``(1, 2, S, S)`` position-MLP inputs ``sign(d) * log(1 + |d|)``.

    ``d = k * quantum / 2**stage`` for ``k`` in ``[-radius, radius]`` (the
    difference in this stage's token units); channel 0 is the row, 1 the
    column difference.
    """
    ks = torch.arange(-radius, radius + 1, device=device,
                      dtype=torch.float32) * (quantum / 2**stage)
    ks = torch.sign(ks) * torch.log1p(ks.abs())
    return torch.stack(torch.meshgrid(ks, ks, indexing='ij'))[None]


def build_window_geometry(coords: Tensor, window_size: int, quantum: int,
                          radius: int, stage: int, shifted: bool,
                          cache: SizeCache) -> WindowGeometry:
    """Window layout, bias-table index and masks of one stage.

    Args:
        coords (Tensor): ``(Bc, H, W, 2)`` long, original coordinates in
            first-stage token units.
        window_size (int): The backbone's window size.
        quantum (int): All coordinate differences are multiples of it.
        radius (int): Largest |difference| / quantum kept in the table;
            larger ones (only between masked pairs) are clamped.
        stage (int): Stage index.
        shifted (bool): Shifted-window block.
        cache (SizeCache): Cache of the size-only tensors (masks, tables).

    Returns:
        WindowGeometry: The stage's geometry. ``rel_index[..., q, k]`` is
        the table entry of ``coords[k] - coords[q]`` (key minus query, as
        the reference).
    """
    h, w = coords.shape[1:3]
    device = coords.device
    window, shift = stage_window((h, w), window_size, shifted)
    pad = ((-h) % window[0], (-w) % window[1])
    attn_mask = None
    if shift or pad[0] or pad[1]:
        attn_mask = cache.get(('mask', h, w, shift, str(device)),
                              lambda: region_mask(h, w, window, shift, device))
    c = coords
    if pad[0] or pad[1]:
        c = F.pad(c.permute(0, 3, 1, 2), (0, pad[1], 0, pad[0]),
                  mode='replicate').permute(0, 2, 3, 1)
    if shift:
        c = torch.roll(c, (-shift, -shift), dims=(1, 2))
    cw = window_partition(c, window)  # (Bc, nW, N, 2)
    diff = cw[:, :, None, :, :] - cw[:, :, :, None, :]  # [q, k]: k - q
    diff = torch.div(diff, quantum, rounding_mode='floor')
    diff = diff.clamp(-radius, radius) + radius
    rel_index = diff[..., 0] * (2 * radius + 1) + diff[..., 1]
    table = cache.get(('table', radius, quantum, stage, str(device)),
                      lambda: table_coords(radius, quantum, stage, device))
    return WindowGeometry(window, shift, pad, rel_index, attn_mask, table)
