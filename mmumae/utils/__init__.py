"""Utilities: data checks, checkpoint reading and the tools' error type."""
from .checkpoint import (CheckpointMismatch, mismatch_text, read_checkpoint,
                         resume_candidates, state_dict_mismatch, state_dict_of)
from .data_checks import check_batches, check_dataset_paths
from .errors import RunError

__all__ = [
    'check_dataset_paths', 'check_batches', 'RunError', 'CheckpointMismatch',
    'read_checkpoint', 'state_dict_of', 'state_dict_mismatch',
    'mismatch_text', 'resume_candidates'
]
