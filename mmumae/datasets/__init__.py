"""Data: the UM-MAE mask transforms."""
from .transforms import *  # noqa: F401,F403
