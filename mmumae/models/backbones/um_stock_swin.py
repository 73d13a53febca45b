"""UM-MAE pre-training of the stock Swin Transformer architecture.

:class:`UMStockSwinTransformer` is mmpretrain's ``SwinTransformer`` (stock
``PatchMerging`` at the end of a stage, relative-position bias *table*)
with one extra parameter, ``mask_token``, and a second forward mode: the
UM-MAE compact grid. Its dense forward is the inherited one, so a
checkpoint of it is a stock Swin checkpoint plus ``mask_token``
(``tools/model_converters/ummae_to_backbone.py --stock-config`` drops it).

In UM mode the encoder sees only the compact image of the kept patches (one
per 2x2 block of mask patches). Every token keeps its original coordinate,
and the bias table is indexed by the offset of two tokens in *original*
stage-``i`` token units: a compact window of ``um_window_size`` tokens
spans offsets of at most ``2 * um_window_size - 1`` original tokens, so an
8-token compact window reads exactly the table of a 16-token window, which
is the table the model holds (``window_size=16``). Dense fine-tuning at
window 16 uses it as it is; other windows resize it as mmpretrain's Swin
does when it loads a checkpoint.
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmpretrain.models.backbones import SwinTransformer
from mmpretrain.models.backbones.swin_transformer import SwinBlock
from torch import Tensor

from mmumae.registry import register_backbone
from ..utils import (WindowGeometry, build_window_geometry, from_windows,
                     to_windows)
from .base import CompactInput, UMEncoderMixin


@register_backbone
class UMStockSwinTransformer(UMEncoderMixin, SwinTransformer):
    """mmpretrain's Swin Transformer with the UM-MAE compact-grid mode.

    Two forward modes:

    - **dense** (``mask=None``): exactly ``SwinTransformer.forward`` (same
      window, padding and shift rules, same outputs).
    - **UM-MAE** (``mask`` and ``sm_mask``): the kept patches are gathered
      into a compact image; secondary-masked tokens are replaced by
      ``mask_token`` before the patch-embedding norm; the blocks attend in
      ``um_window_size`` windows of the compact grid (a window not smaller
      than the map shrinks to it and stops shifting), with the bias of
      each pair read from the stock table at the pair's offset in original
      coordinates; stock ``PatchMerging`` merges 2x2 compact tokens (a
      merged token takes the coordinate of its top-left token, halved).

    The state dict is ``SwinTransformer``'s (same keys and shapes at the
    same ``window_size``) plus ``mask_token``.

    Args:
        arch (str | dict): As ``SwinTransformer``. Defaults to ``'tiny'``.
        img_size (int): As ``SwinTransformer`` (used for an absolute
            position embedding only). Defaults to 256.
        window_size (int): Window of the dense mode and the size of the
            bias tables (``(2 * window_size - 1)**2`` entries). Defaults
            to 16.
        um_window_size (int): Window on the compact grid of UM mode, a
            multiple of ``2 * mask_patch_size / patch_size`` (8) so that
            windows and shifts hold whole mask patches; each stage's table
            must hold its offsets, i.e. the table's window
            (``window_size`` or a stage's own ``block_cfgs`` window) must
            be at least twice the compact window actually used. Defaults
            to 8.
        mask_patch_size (int): Pixel size of a mask patch, a multiple of
            ``patch_size``. Defaults to 16.
        patch_size (int): Patch-embedding stride. Defaults to 4.
        init_cfg (dict | list, optional): Initialisation config. Defaults
            to None (:attr:`default_init_cfg`, as mmpretrain's MIM Swin
            configs); ``mask_token`` is drawn from a truncated normal
            unless a checkpoint is loaded.
        **kwargs: Every other ``SwinTransformer`` option (``out_indices``,
            ``drop_path_rate``, ``stage_cfgs``, ``pad_small_map``,
            ``with_cp``, ``frozen_stages``, ...). ``use_abs_pos_embed``
            and ``out_after_downsample`` are refused (UM mode has neither).
    """
    resized_on_load = ('relative_position_bias_table', )

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: int = 256,
                 window_size: int = 16,
                 um_window_size: int = 8,
                 mask_patch_size: int = 16,
                 patch_size: int = 4,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 **kwargs) -> None:
        for key in ('use_abs_pos_embed', 'out_after_downsample'):
            if kwargs.get(key):
                raise ValueError(
                    f'UMStockSwinTransformer: {key}=True has no UM-MAE '
                    f'compact-grid counterpart; leave it False.')
        if not isinstance(um_window_size, int) or um_window_size <= 0:
            raise ValueError(
                f'UMStockSwinTransformer: um_window_size={um_window_size!r} '
                f'must be a positive int (8 for pre-training).')
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            window_size=window_size,
            init_cfg=init_cfg or self.default_init_cfg,
            **kwargs)
        self._setup_um(patch_size, mask_patch_size)
        self.um_window_size = um_window_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, self.embed_dims))

    def _forward_full(self, x: Tensor,
                      mask: Optional[Tensor]) -> Tuple[Tensor, ...]:
        """Dense mode: the stock forward."""
        return SwinTransformer.forward(self, x)

    def _forward_um(self, c: CompactInput) -> Tuple[Tensor, ...]:
        pe = self.patch_embed
        img = c.image
        if pe.adaptive_padding is not None:
            img = pe.adaptive_padding(img)
        x = pe.projection(img).permute(0, 2, 3, 1)  # (B, h, w, C)
        x = torch.where(c.sm_tokens[..., None], self.mask_token.to(x.dtype),
                        x)
        if pe.norm is not None:
            x = pe.norm(x)
        x = self.drop_after_pos(x)
        outs = []
        for i, (stage, crd) in enumerate(
                zip(self.stages, self.stage_coordinates(c.coords))):
            geos = {}
            for blk in stage.blocks:
                shifted = blk.attn.shift_size > 0
                if shifted not in geos:
                    geos[shifted] = self.compact_geometry(
                        crd, blk.attn.w_msa.window_size[0], shifted, i)
                x = self._um_block(blk, x, geos[shifted])
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                b, h, w, ch = x.shape
                x, (h, w) = stage.downsample(x.reshape(b, h * w, ch), (h, w))
                x = x.view(b, h, w, -1)
        return tuple(outs)

    def stage_coordinates(self, coords: Tensor) -> List[Tensor]:
        """Per stage, the ``(B, h_i, w_i, 2)`` original coordinates of the
        compact tokens in that stage's units, from the first stage's
        ``coords`` (``compact_input(...).coords``): a token merged by
        ``PatchMerging`` sits where its top-left token sat, halved (rounded
        down; an odd map's extra row and column are the merging's padding).
        """
        out = [coords]
        for _ in range(1, len(self.stages)):
            out.append(
                torch.div(out[-1][:, ::2, ::2], 2, rounding_mode='floor'))
        return out

    def compact_geometry(self, coords: Tensor, table_window: int,
                         shifted: bool, stage: int = 0) -> WindowGeometry:
        """Windows of the compact grid and the stock-table index of every
        (query, key) pair.

        Args:
            coords (Tensor): ``(B, h, w, 2)`` long original coordinates of
                the stage's tokens, in that stage's token units.
            table_window (int): Window of the stage's bias table (its
                offsets reach ``table_window - 1``).
            shifted (bool): Shifted-window block.
            stage (int): Stage index (for messages).

        Returns:
            WindowGeometry: ``rel_index[b, w, q, k]`` indexes the stock
            table ``relative_position_bias_table`` (query minus key, the
            stock convention), ``attn_mask`` masks shifted regions and
            padded keys.
        """
        h, w = coords.shape[1:3]
        shrunk = max(h, w) <= self.um_window_size
        used = max(h, w) if shrunk else self.um_window_size
        shift = used // 2 if shifted and not shrunk else 0
        # tokens per mask patch at this stage (1 once a token spans them)
        per_patch = max(self.tokens_per_patch // 2**stage, 1)
        if used % per_patch or shift % per_patch:
            raise ValueError(
                f'UMStockSwinTransformer: {used}-token compact windows '
                f'(shift {shift}) cut the {per_patch}-token mask patches of '
                f'stage {stage}, so a window would span more original '
                f'tokens than its table holds; use an um_window_size that '
                f'is a multiple of {2 * per_patch}.')
        # windows hold whole patches; the kept patches of two neighbouring
        # 2x2 blocks lie up to 3 patches apart, so `used` compact tokens
        # span at most 2 * used - 1 original ones
        if 2 * used > table_window:
            raise ValueError(
                f'UMStockSwinTransformer: stage {stage} attends in '
                f'{used}-token compact windows, whose pairs lie up to '
                f'{2 * used - 1} original tokens apart, but its bias table '
                f'is that of a {table_window}-token window (offsets up to '
                f'{table_window - 1}); set window_size >= {2 * used} or '
                f'um_window_size <= {table_window // 2}.')
        radius = table_window - 1
        geo = build_window_geometry(
            coords, window_size=self.um_window_size, quantum=1,
            radius=radius, stage=stage, shifted=shifted,
            cache=self._size_cache)
        # the helper indexes key minus query; the stock table is indexed by
        # query minus key: the same table read backwards
        stock = (2 * radius + 1)**2 - 1 - geo.rel_index
        return WindowGeometry(geo.window, geo.shift, geo.pad, stock,
                              geo.attn_mask, geo.table_coords)

    def _um_block(self, blk: SwinBlock, x: Tensor,
                  geo: WindowGeometry) -> Tensor:
        """A stock ``SwinBlock`` on a ``(B, h, w, C)`` compact map."""

        def inner(x: Tensor) -> Tensor:
            y = self._um_attention(blk, blk.norm1(x), geo)
            x = x + blk.attn.drop(y)
            return blk.ffn(blk.norm2(x), identity=x)

        if blk.with_cp and x.requires_grad:
            return cp.checkpoint(inner, x, use_reentrant=False)
        return inner(x)

    @staticmethod
    def _um_attention(blk: SwinBlock, x: Tensor,
                      geo: WindowGeometry) -> Tensor:
        """The block's ``WindowMSA`` weights on compact windows, with the
        table entry of each pair's original offset as the bias."""
        msa = blk.attn.w_msa
        win = to_windows(x, geo)  # (B, nW, N, C)
        b, nw, n, c = win.shape
        heads = msa.num_heads
        qkv = msa.qkv(win).view(b, nw, n, 3, heads, c // heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, h, N, d)
        idx = geo.rel_index
        bias = msa.relative_position_bias_table.index_select(
            0, idx.flatten()).view(*idx.shape, heads)
        bias = bias.permute(0, 1, 4, 2, 3)  # (B, nW, heads, N, N)
        if geo.attn_mask is not None:
            bias = bias + geo.attn_mask
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype),
            dropout_p=msa.attn_drop.p if msa.training else 0.,
            scale=msa.scale)
        out = msa.proj_drop(msa.proj(out.transpose(-3, -2).flatten(-2)))
        return from_windows(out, geo, x.shape[1:3])

    # ------------------------------------------------------ lr decay etc.
    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """As ``SwinTransformer``; ``mask_token`` is in the stem (0)."""
        if param_name[len(prefix):].startswith('mask_token') and \
                param_name.startswith(prefix):
            return 0, sum(self.depths) + 2
        return super().get_layer_depth(param_name, prefix)
