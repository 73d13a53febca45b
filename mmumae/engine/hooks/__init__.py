"""Hooks."""
from .checkpoint_hook import SafeCheckpointHook
from .reconstruction_hook import ReconstructionFigureHook
from .skipped_images_hook import SkippedImagesHook

__all__ = [
    'ReconstructionFigureHook', 'SafeCheckpointHook', 'SkippedImagesHook'
]
