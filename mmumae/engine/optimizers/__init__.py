"""Optimizer wrapper constructors."""
from .layer_decay import DenseLayerDecayOptimWrapperConstructor

__all__ = ['DenseLayerDecayOptimWrapperConstructor']
