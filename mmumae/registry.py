"""Registries mmumae writes into.

Everything model-side is registered in mmpretrain's registries. Backbones are
the one concept shared with detection and segmentation, so
:func:`register_backbone` also puts the *same class object* into mmdet's and
mmseg's ``MODELS`` registries (when those packages are installed). A config
in any of the three scopes can then say ``type='UMSwinTransformer'`` after
``custom_imports=dict(imports=['mmumae'])``.
"""
import importlib
from typing import List, Type

from mmpretrain.registry import HOOKS, MODELS, TRANSFORMS

__all__ = [
    'HOOKS', 'MODELS', 'TRANSFORMS', 'register_backbone', 'dense_scopes'
]

# Downstream scopes whose MODELS registry receives our backbones.
_DENSE_SCOPES = ('mmdet', 'mmseg')


def dense_scopes() -> List[str]:
    """Return the installed downstream scopes (``mmdet``, ``mmseg``)."""
    found = []
    for scope in _DENSE_SCOPES:
        try:
            importlib.import_module(f'{scope}.registry')
        except ModuleNotFoundError:
            continue
        found.append(scope)
    return found


def register_backbone(cls: Type) -> Type:
    """Register one backbone class in mmpretrain, mmdet and mmseg.

    Used as a class decorator. The class is registered once per registry
    under its own name; no subclass or copy is made, so a checkpoint saved
    in one scope loads in the others.
    """
    MODELS.register_module(module=cls)
    for scope in dense_scopes():
        registry = importlib.import_module(f'{scope}.registry').MODELS
        registry.register_module(module=cls)
    return cls
