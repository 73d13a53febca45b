"""Datasets and transforms."""
from .loading import SafeLoadImageFromFile
from .transforms import *  # noqa: F401,F403

__all__ = ['SafeLoadImageFromFile']
