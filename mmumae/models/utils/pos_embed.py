"""Fixed 2-D sin-cos position embedding in the reference channel layout."""
import torch
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from torch import Tensor


def sincos_2d_colfirst(h: int, w: int, dims: int,
                       temperature: float = 10000.) -> Tensor:
    """2-D sin-cos table of an ``h x w`` grid, column first (as MAE).

    Channels ``[0, dims/2)`` encode the column ``x`` (sin then cos) and
    ``[dims/2, dims)`` the row ``y``; the official UM-MAE and MAE models use
    this layout. mmpretrain's ``build_2d_sincos_position_embedding`` builds
    the same table with the row first (for raster-ordered tokens when given
    the resolution as ``(w, h)``), so its two halves are swapped here.

    Args:
        h (int): Grid rows.
        w (int): Grid columns.
        dims (int): Channels, a multiple of 4.
        temperature (float): Frequency base. Defaults to 10000.

    Returns:
        Tensor: ``(h * w, dims)`` float32, tokens in raster order.
    """
    if dims % 4:
        raise ValueError(f'sin-cos position embedding: dims={dims} must be a '
                         f'multiple of 4.')
    row_first = build_2d_sincos_position_embedding((w, h), dims,
                                                   temperature)[0]
    half = dims // 2
    return torch.cat([row_first[:, half:], row_first[:, :half]], dim=1)
