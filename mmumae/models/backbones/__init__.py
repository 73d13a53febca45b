"""Backbones: one class per family, pre-training and dense modes."""
from .um_pvt import UMPVT
from .um_swin import UMSwinTransformer

__all__ = ['UMSwinTransformer', 'UMPVT']
