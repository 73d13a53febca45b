"""Backbones: one class per family, pre-training and dense modes."""
from .base import UMEncoderMixin
from .um_pvt import UMPVT
from .um_stock_swin import UMStockSwinTransformer
from .um_swin import UMSwinTransformer
from .um_vit import UMVisionTransformer

__all__ = [
    'UMEncoderMixin', 'UMSwinTransformer', 'UMPVT', 'UMVisionTransformer',
    'UMStockSwinTransformer'
]
