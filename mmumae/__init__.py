"""mmumae: UM-MAE pre-training for pyramid vision transformers.

Importing this package registers mmumae's models, mask transforms, the
reconstruction-figure hook and the layer-decay optimizer constructor in
mmpretrain's registries. It changes no other global state of mmengine,
torch or numpy, and imports nothing of the run-safety add-on
(:mod:`runsafe`), which configs opt into on their own.
"""
from . import datasets, engine, models, visualization  # noqa: F401
from .version import __version__

__all__ = ['__version__']
