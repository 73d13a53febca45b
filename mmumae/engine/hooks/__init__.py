"""Hooks."""
from .reconstruction_hook import ReconstructionFigureHook

__all__ = ['ReconstructionFigureHook']
