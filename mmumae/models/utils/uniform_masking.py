"""Geometry of Uniform Masking, shared by every UM encoder and the decoder.

Conventions: a *mask* is a bool tensor ``(B, gh, gw)`` on the grid of mask
patches, True = removed by Uniform Sampling (US). The kept patches, one per
2x2 block, are listed in *block order* (raster over the ``gh/2 x gw/2``
blocks): that is the layout of the compact image the pyramid encoder sees.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor


def size_rule(size: Tuple[int, int], unit: int, what: str) -> str:
    """An error message naming the sizes near ``size`` that are multiples of
    ``unit``, e.g. ``'... 240x240 is not: use 224 or 256 (or change ...)'``.
    """
    def near(s: int) -> str:
        lo, hi = max(s // unit, 1) * unit, -(-s // unit) * unit
        return str(s) if s % unit == 0 else (
            f'{lo} or {hi}' if lo < s else str(hi))

    h, w = size
    fix = near(h) if h == w else f'{near(h)} (H), {near(w)} (W)'
    return (f'{what}: the input size must be a multiple of {unit} px; '
            f'{h}x{w} is not: use {fix}')


def check_patch_mask(mask: Tensor, image_hw: Tuple[int, int],
                     owner: str) -> Tuple[int, int]:
    """Validate a mask against an image and return the mask-patch size.

    Raises a ``ValueError`` naming the problem (wrong rank, image size not a
    multiple of the mask grid) instead of a shape error deep in torch.
    """
    if mask.dim() != 3:
        raise ValueError(
            f'{owner}: expected a mask of shape (B, H/p, W/p) on the '
            f'mask-patch '
            f'grid, got shape {tuple(mask.shape)}. Generate it with '
            f'UniformMaskGenerator/RandomPatchMaskGenerator and pack it with '
            f'PackInputs(algorithm_keys=[...]).')
    h, w = image_hw
    gh, gw = mask.shape[-2:]
    if h % gh or w % gw or h // gh != w // gw:
        raise ValueError(
            f'{owner}: image size {h}x{w} does not match the {gh}x{gw} mask '
            f'grid; set the mask generator input_size to the image size.')
    return h // gh


def _block_keep(mask: Tensor) -> Tensor:
    """``(B, gh, gw)`` mask -> ``(B, gh/2, gw/2, 4)`` kept flags per block."""
    b, gh, gw = mask.shape
    keep = (~mask.bool()).view(b, gh // 2, 2, gw // 2, 2)
    return keep.permute(0, 1, 3, 2, 4).reshape(b, gh // 2, gw // 2, 4)


def check_uniform_mask(mask: Tensor, owner: str = 'UM encoder') -> None:
    """Refuse a mask that does not keep exactly one patch per 2x2 block.

    Reads the mask's values (on a GPU: a host-device sync), so the model
    does it outside ``torch.compile`` and, inside :class:`UMMAE`, once.
    """
    if not bool((_block_keep(mask).sum(-1) == 1).all()):
        raise ValueError(
            f'{owner}: the mask is not a uniform-sampling mask (every 2x2 '
            f'block must keep exactly one patch). Use UniformMaskGenerator; '
            f'for random masks use the SimMIM path (no sm_mask).')


def kept_patch_ids(mask: Tensor, owner: str = 'UM encoder',
                   check: bool = True) -> Tensor:
    """Indices (raster, on the mask grid) of the kept patches, in block order.

    Args:
        mask (Tensor): ``(B, gh, gw)`` bool, True = removed by US.
        owner (str): Name used in error messages.
        check (bool): Verify that every 2x2 block keeps exactly one patch
            (:func:`check_uniform_mask`; skipped while ``torch.compile``
            traces, as it reads the mask's values).

    Returns:
        Tensor: ``(B, gh/2 * gw/2)`` long.
    """
    b, gh, gw = mask.shape
    if gh % 2 or gw % 2:
        raise ValueError(
            f'{owner}: a {gh}x{gw} mask grid does not split into 2x2 blocks; '
            f'use an input size that is a multiple of 2 x mask_patch_size '
            f'(e.g. 224 or 256 for 16-px mask patches).')
    keep = _block_keep(mask)
    if check and not torch.compiler.is_compiling():
        check_uniform_mask(mask, owner)
    offset = keep.to(torch.uint8).argmax(-1)  # 0..3, raster inside the block
    bi = torch.arange(gh // 2, device=mask.device).view(1, -1, 1)
    bj = torch.arange(gw // 2, device=mask.device).view(1, 1, -1)
    rows = 2 * bi + torch.div(offset, 2, rounding_mode='floor')
    cols = 2 * bj + offset % 2
    return (rows * gw + cols).reshape(b, -1)


def masked_patch_ids(mask: Tensor, num: Optional[int] = None) -> Tensor:
    """Indices of the removed patches in raster order, ``(B, num_masked)``.

    Every sample must remove the same number of patches (true for US).

    Args:
        mask (Tensor): ``(B, gh, gw)`` bool, True = removed.
        num (int, optional): Removed patches per sample, when known from
            the shape (US: three of every 2x2 block), which keeps the
            output shape static (no read of the mask's values). Defaults
            to None (counted on the first sample).
    """
    flat = mask.flatten(1)
    if num is None:
        num = int(flat[0].sum())
    order = torch.argsort((~flat).to(torch.uint8), dim=1, stable=True)
    return order[:, :num]


def gather_patches(x: Tensor, patch_ids: Tensor, patch_size: int,
                   out_hw: Tuple[int, int]) -> Tensor:
    """Gather square patches of ``x`` into a new compact image.

    Only the selected pixels are read (advanced indexing on a view); nothing
    is computed over the full image.

    Args:
        x (Tensor): ``(B, C, H, W)``.
        patch_ids (Tensor): ``(B, K)`` raster indices on the ``H/p x W/p``
            grid, listed in the raster order of the output grid.
        patch_size (int): ``p``.
        out_hw (tuple): Output grid ``(h, w)`` of patches, ``h * w == K``.

    Returns:
        Tensor: ``(B, C, h * p, w * p)``.
    """
    b, c, h, w = x.shape
    p = patch_size
    gw = w // p
    view = x.view(b, c, h // p, p, gw, p)
    rows = torch.div(patch_ids, gw, rounding_mode='floor')
    cols = patch_ids % gw
    bidx = torch.arange(b, device=x.device).view(b, 1)
    picked = view[bidx, :, rows, :, cols, :]  # (B, K, C, p, p)
    oh, ow = out_hw
    picked = picked.view(b, oh, ow, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return picked.reshape(b, c, oh * p, ow * p)


def take_patch_values(values: Tensor, patch_ids: Tensor) -> Tensor:
    """Per-patch values ``(B, gh, gw)`` at ``patch_ids`` -> ``(B, K)``."""
    return torch.gather(values.flatten(1), 1, patch_ids)


def original_token_coords(patch_ids: Tensor, grid_w: int,
                          compact_hw: Tuple[int, int],
                          tokens_per_patch: int) -> Tensor:
    """Original (row, col) of every token of the compact grid.

    Coordinates are in units of the encoder's first-stage tokens (4 px for
    Swin/PVT). The compact token ``(i * t + a, j * t + b)`` comes from kept
    patch ``patch_ids[i * w + j]`` at offset ``(a, b)`` inside it.

    Returns:
        Tensor: ``(B, h * t, w * t, 2)`` long.
    """
    b = patch_ids.shape[0]
    h, w = compact_hw
    t = tokens_per_patch
    rows = torch.div(patch_ids, grid_w, rounding_mode='floor')
    rows = rows.view(b, h, 1, w, 1)
    cols = (patch_ids % grid_w).view(b, h, 1, w, 1)
    ar = torch.arange(t, device=patch_ids.device)
    tok_r = (rows * t + ar.view(1, 1, t, 1, 1)).expand(b, h, t, w, t)
    tok_c = (cols * t + ar.view(1, 1, 1, 1, t)).expand(b, h, t, w, t)
    coords = torch.stack([tok_r, tok_c], dim=-1)
    return coords.reshape(b, h * t, w * t, 2)


def expand_patch_mask(mask: Tensor, tokens_per_patch: int) -> Tensor:
    """Patch-level ``(B, h, w)`` mask -> token-level ``(B, h*t, w*t)``."""
    t = tokens_per_patch
    if t == 1:
        return mask
    return mask.repeat_interleave(t, 1).repeat_interleave(t, 2)
