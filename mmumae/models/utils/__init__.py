"""Shared model utilities."""
from .uniform_masking import (check_patch_mask, expand_patch_mask,
                              gather_patches, kept_patch_ids,
                              masked_patch_ids, original_token_coords,
                              take_patch_values)

__all__ = [
    'check_patch_mask', 'kept_patch_ids', 'masked_patch_ids',
    'gather_patches', 'take_patch_values', 'original_token_coords',
    'expand_patch_mask'
]
