"""Heads."""
from .ummae_head import UMMAEPretrainHead

__all__ = ['UMMAEPretrainHead']
