"""Registries mmumae writes into: mmpretrain's only.

Everything, backbones included, is registered in mmpretrain's registries.
mmdet and mmseg configs name a backbone by OpenMMLab's cross-scope
convention, ``type='mmpretrain.UMSwinTransformer'`` (after
``custom_imports=dict(imports=['mmumae'])``): mmengine builds it from
mmpretrain's registry, the same class object in every scope, so a
checkpoint saved in one scope loads in the others.
"""
from typing import Type

from mmpretrain.registry import HOOKS, MODELS, TRANSFORMS

__all__ = ['HOOKS', 'MODELS', 'TRANSFORMS', 'register_backbone']


def register_backbone(cls: Type) -> Type:
    """Register one backbone class in mmpretrain's ``MODELS`` (a class
    decorator); mmdet/mmseg configs use ``type='mmpretrain.<name>'``."""
    MODELS.register_module(module=cls)
    return cls
