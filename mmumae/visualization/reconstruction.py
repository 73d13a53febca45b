"""Reconstruction figures: original | US-masked | encoder input | output."""
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

#: Fill colours (RGB) for removed patches in the figure.
US_COLOUR = (128, 128, 128)
SM_COLOUR = (70, 90, 160)
COLUMNS = ('original', 'US-masked (75% removed)',
           'encoder input (SM patches blue)', 'reconstruction')


def to_uint8(img: Tensor, mean: Tensor, std: Tensor) -> np.ndarray:
    """Normalised ``(C, H, W)`` tensor -> ``(H, W, C)`` uint8 RGB array."""
    img = img.detach().float().cpu() * std.view(-1, 1, 1).cpu() + \
        mean.view(-1, 1, 1).cpu()
    return img.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def _fill(img: np.ndarray, where: Tensor, colour: Sequence[int]) -> None:
    img[where.detach().cpu().numpy().astype(bool)] = colour


def reconstruction_panels(results: Dict[str, Tensor], mean: Tensor,
                          std: Tensor, index: int) -> list:
    """The four uint8 panels of one sample of :meth:`UMMAE.reconstruct`."""
    us = results['mask'][index, 0] > 0
    sm = results['sm_mask'][index, 0] > 0
    original = to_uint8(results['original'][index], mean, std)
    us_masked = original.copy()
    _fill(us_masked, us, US_COLOUR)
    encoder_input = us_masked.copy()
    _fill(encoder_input, sm, SM_COLOUR)
    recon = to_uint8(results['reconstruction'][index], mean, std)
    return [original, us_masked, encoder_input, recon]


def save_reconstruction_figure(results: Dict[str, Tensor],
                               mean: Tensor,
                               std: Tensor,
                               out_file: str,
                               max_samples: int = 4,
                               title: Optional[str] = None) -> str:
    """Save a grid, one row per sample, columns as :data:`COLUMNS`.

    Args:
        results (dict): Output of :meth:`mmumae.models.UMMAE.reconstruct`.
        mean (Tensor): Per-channel mean used to normalise the inputs.
        std (Tensor): Per-channel std used to normalise the inputs.
        out_file (str): PNG path.
        max_samples (int): Rows to draw. Defaults to 4.
        title (str, optional): Figure title.

    Returns:
        str: ``out_file``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    n = min(max_samples, results['original'].shape[0])
    fig, axes = plt.subplots(n, 4, figsize=(12, 3 * n + 0.4), squeeze=False)
    for row in range(n):
        for col, panel in enumerate(reconstruction_panels(
                results, mean, std, row)):
            ax = axes[row][col]
            ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(COLUMNS[col], fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


@torch.no_grad()
def reconstruct_batch(model, data: dict) -> Dict[str, Tensor]:
    """Pre-process a collated batch and run ``model.reconstruct`` on it."""
    was_training = model.training
    model.eval()
    try:
        data = model.data_preprocessor(data, False)
        return model.reconstruct(data['inputs'], data['data_samples'])
    finally:
        model.train(was_training)
