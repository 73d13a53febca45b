"""Hooks."""
from .knn_probe_hook import KNNProbeHook, knn_predict
from .reconstruction_hook import ReconstructionFigureHook

__all__ = ['KNNProbeHook', 'ReconstructionFigureHook', 'knn_predict']
