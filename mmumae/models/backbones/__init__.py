"""Backbones: one class per family, pre-training and dense modes."""
from .um_pvt import UMPVT
from .um_stock_swin import UMStockSwinTransformer
from .um_swin import UMSwinTransformer
from .um_vit import UMMAEViT

__all__ = [
    'UMSwinTransformer', 'UMPVT', 'UMMAEViT', 'UMStockSwinTransformer'
]
