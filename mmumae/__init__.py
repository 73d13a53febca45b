"""mmumae: UM-MAE pre-training for pyramid vision transformers.

Importing this package registers every mmumae module in mmpretrain's
registries (backbones also in mmdet's and mmseg's), the ``atomic_local``
file backend, and :func:`mmumae.utils.read_checkpoint` as mmengine's reader
of local checkpoint files. It changes no other global state.
"""
from . import datasets, engine, models, utils, visualization  # noqa: F401
from .version import __version__

__all__ = ['__version__']
