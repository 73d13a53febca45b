"""Figures."""
from .reconstruction import (reconstruct_batch, reconstruction_panels,
                             save_reconstruction_figure)

__all__ = [
    'save_reconstruction_figure', 'reconstruct_batch', 'reconstruction_panels'
]
