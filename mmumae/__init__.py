"""mmumae: UM-MAE pre-training for pyramid vision transformers.

Importing this package applies the compatibility fixes of
:mod:`mmumae.compat` and registers every mmumae module in mmpretrain's
registries (backbones also in mmdet's and mmseg's).
"""
from . import compat  # noqa: F401  (apply fixes before anything else)
from . import datasets, engine, models, utils, visualization  # noqa: F401
from .version import __version__

__all__ = ['__version__']
