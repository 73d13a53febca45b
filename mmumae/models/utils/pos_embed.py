"""Fixed 2-D sin-cos position embedding in the reference channel layout."""
import torch
from torch import Tensor


def sincos_2d_colfirst(h: int, w: int, dims: int,
                       temperature: float = 10000.) -> Tensor:
    """2-D sin-cos table of an ``h x w`` grid, column first (as MAE).

    Channels ``[0, dims/2)`` encode the column ``x`` (sin then cos) and
    ``[dims/2, dims)`` the row ``y``, each with the frequencies
    ``temperature ** (-k / (dims/4))``; the official UM-MAE and MAE models
    use this layout. mmpretrain's ``build_2d_sincos_position_embedding``
    puts the row first, which would not match their checkpoints.

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
    quarter = dims // 4
    omega = 1. / temperature**(
        torch.arange(quarter, dtype=torch.float32) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float32),
        torch.arange(w, dtype=torch.float32),
        indexing='ij')
    x = cols.flatten()[:, None] * omega
    y = rows.flatten()[:, None] * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
