"""Decoders."""
from .ummae_decoder import UMMAEPretrainDecoder

__all__ = ['UMMAEPretrainDecoder']
