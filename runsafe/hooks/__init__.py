"""Run-safety hooks, registered in mmengine's root ``HOOKS`` (found from
every scope)."""
from .exact_resume_hook import ExactResumeHook
from .finite_loss_hook import FiniteLossHook
from .strict_load_hook import StrictLoadHook
from .work_dir_hook import WorkDirHook, WorkDirLock

__all__ = [
    'ExactResumeHook', 'FiniteLossHook', 'StrictLoadHook', 'WorkDirHook',
    'WorkDirLock'
]
