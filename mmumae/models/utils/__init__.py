"""Shared model utilities."""
from .pos_embed import sincos_2d_colfirst
from .renamed import refuse_unknown_args, register_renamed_type
from .transformer_block import AttentionBase, PreNormBlock, build_blocks
from .uniform_masking import (check_patch_mask, check_uniform_mask,
                              expand_patch_mask, gather_patches,
                              kept_patch_ids, masked_patch_ids,
                              original_token_coords, size_rule,
                              take_patch_values)
from .window_geometry import (SizeCache, WindowGeometry, build_window_geometry,
                              from_windows, to_windows, window_partition)

__all__ = [
    'check_patch_mask', 'check_uniform_mask', 'kept_patch_ids',
    'masked_patch_ids', 'gather_patches', 'take_patch_values',
    'original_token_coords', 'expand_patch_mask', 'size_rule',
    'sincos_2d_colfirst', 'PreNormBlock', 'AttentionBase', 'build_blocks',
    'SizeCache', 'WindowGeometry', 'build_window_geometry', 'from_windows',
    'to_windows', 'window_partition', 'refuse_unknown_args',
    'register_renamed_type'
]
