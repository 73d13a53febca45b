"""Utilities."""
from .data_checks import check_dataset_paths

__all__ = ['check_dataset_paths']
