"""runsafe: run safety for mmengine runs, an add-on that configs opt into.

A config opts in with ``custom_imports=dict(imports=['runsafe'])``,
``runner_type='SafeRunner'``, the hooks in ``default_hooks``, the
``atomic_local`` checkpoint backend and, in its dataset pipelines,
``SafeLoadImageFromFile`` / ``CheckSegMap`` (mmumae's base runtime and
dataset configs do all of it). Importing this package registers those
names in mmengine's root registries (so every scope finds them), the
``atomic_local`` file backend, and :func:`runsafe.read_checkpoint` as
mmengine's loader of local checkpoint files.
"""
from .atomic_backend import AtomicLocalBackend
from .checkpoint import (CheckpointMismatch, mismatch_text, read_checkpoint,
                         resume_candidates, state_dict_mismatch, state_dict_of)
from .data_checks import check_batches, check_dataset_paths
from .errors import RunError, error_line
from .hooks import (ExactResumeHook, FiniteLossHook, StrictLoadHook,
                    WorkDirHook, WorkDirLock)
from .loading import CheckSegMap, SafeLoadImageFromFile
from .runner import (SafeRunner, fp32_without_gpu, has_gpu,
                     newest_loadable_checkpoint)

__all__ = [
    'AtomicLocalBackend', 'CheckpointMismatch', 'mismatch_text',
    'read_checkpoint', 'resume_candidates', 'state_dict_mismatch',
    'state_dict_of', 'check_batches', 'check_dataset_paths', 'RunError',
    'error_line', 'ExactResumeHook', 'FiniteLossHook', 'StrictLoadHook',
    'WorkDirHook', 'WorkDirLock', 'CheckSegMap', 'SafeLoadImageFromFile',
    'SafeRunner', 'has_gpu', 'newest_loadable_checkpoint', 'fp32_without_gpu'
]
