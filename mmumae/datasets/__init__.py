"""Data: image loading that names bad files, and the UM-MAE mask
transforms."""
from .loading import CheckSegMap, SafeLoadImageFromFile, prepare_image_loading
from .transforms import *  # noqa: F401,F403

__all__ = ['CheckSegMap', 'SafeLoadImageFromFile', 'prepare_image_loading']
