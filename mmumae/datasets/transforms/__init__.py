"""Mask generators."""
from .masking import RandomPatchMaskGenerator, UniformMaskGenerator

__all__ = ['UniformMaskGenerator', 'RandomPatchMaskGenerator']
