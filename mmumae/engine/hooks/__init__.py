"""Hooks."""
from .exact_resume_hook import ExactResumeHook
from .finite_loss_hook import FiniteLossHook
from .reconstruction_hook import ReconstructionFigureHook
from .strict_load_hook import StrictLoadHook
from .work_dir_hook import WorkDirHook

__all__ = [
    'ExactResumeHook', 'FiniteLossHook', 'ReconstructionFigureHook',
    'StrictLoadHook', 'WorkDirHook'
]
