"""Self-supervised algorithms."""
from .ummae import UMMAE

__all__ = ['UMMAE']
