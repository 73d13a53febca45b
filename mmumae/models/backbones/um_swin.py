"""Swin Transformer for UM-MAE: one backbone for pre-training and dense use.

The relative position bias is not Swin's fixed table but a small MLP of the
log-spaced coordinate difference of two tokens, so it is defined for tokens
that are neighbours in the compact (uniformly sampled) grid but not in the
image. Each token carries its original coordinate; the bias is evaluated
once per distinct difference and gathered, which is exact and cheap. The
window geometry lives in :mod:`mmumae.models.utils.window_geometry`.
"""
import math
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from mmumae.registry import register_backbone
from ..utils import (AttentionBase, WindowGeometry, build_blocks,
                     build_window_geometry, from_windows, to_windows)
from .base import CompactInput, UMBackbone


class PositionMLPWindowAttention(AttentionBase):
    """(Shifted-)window multi-head self-attention, position-MLP bias.

    The bias of a token pair is ``MLP(sign(d) * log(1 + |d|))`` where ``d`` is
    the difference of their original coordinates (key minus query) in this
    stage's token units; the MLP is a 1x1 conv 2 -> ``rpe_hidden_dims``,
    ReLU, 1x1 conv -> ``num_heads``. The map is padded, shifted and cut into
    windows as the :class:`WindowGeometry` says.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Number of heads.
        rpe_hidden_dims (int): Hidden width of the position MLP.
            Defaults to 32.
        qkv_bias (bool): Add a bias to q, k, v. Defaults to True.
        **kwargs: ``attn_drop``, ``proj_drop``, ``init_cfg`` of
            :class:`AttentionBase`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 rpe_hidden_dims: int = 32,
                 qkv_bias: bool = True,
                 **kwargs) -> None:
        super().__init__(embed_dims, num_heads, **kwargs)
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.rpe_mlp = nn.Sequential(
            nn.Conv2d(2, rpe_hidden_dims, 1), nn.ReLU(inplace=True),
            nn.Conv2d(rpe_hidden_dims, num_heads, 1))

    def position_bias(self, geo: WindowGeometry) -> Tensor:
        """Bias ``(Bc, nW, heads, N, N)``: MLP once per distinct difference."""
        table = self.rpe_mlp(geo.table_coords.to(self.qkv.weight.dtype))
        table = table.flatten(2)[0]  # (heads, S * S)
        # index_select: its backward is an index_add, cheaper than the
        # accumulating index_put of advanced indexing
        idx = geo.rel_index
        bias = table.index_select(1, idx.flatten()).view(-1, *idx.shape)
        return bias.permute(1, 2, 0, 3, 4)  # (Bc, nW, heads, N, N)

    def forward(self, x: Tensor, geo: WindowGeometry) -> Tensor:
        """x: ``(B, H, W, C)`` map -> same shape."""
        win = to_windows(x, geo)  # (B, nW, N, C)
        b, nw, n, _ = win.shape
        qkv = self.qkv(win).view(b, nw, n, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, h, N, d)
        bias = self.position_bias(geo)
        if geo.attn_mask is not None:
            bias = bias + geo.attn_mask
        win = self.attend(q, k, v, bias.to(q.dtype))
        return from_windows(win, geo, x.shape[1:3])


class UMSwinDownsample(BaseModule):
    """LayerNorm then a 2x2 stride-2 conv (odd maps are zero-padded).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        norm_cfg (dict): Norm config. Defaults to
            ``dict(type='LN', eps=1e-6)``.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.norm = build_norm_layer(norm_cfg, in_channels)[1]
        self.reduction = nn.Conv2d(in_channels, out_channels, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, H, W, C)`` -> ``(B, ceil(H/2), ceil(W/2), C')``."""
        x = self.norm(x).permute(0, 3, 1, 2)
        if x.shape[2] % 2 or x.shape[3] % 2:
            x = F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return self.reduction(x).permute(0, 2, 3, 1)


class UMSwinStage(BaseModule):
    """Optional downsampling, then alternating W-MSA / SW-MSA blocks.

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Channels of the stage.
        num_heads (int): Attention heads.
        drop_path_rates (Sequence[float]): One per block (sets the depth).
        downsample (bool): Start with a :class:`UMSwinDownsample`.
        block_cfg (dict): :func:`build_blocks` options (``mlp_ratio``,
            ``drop_rate``, ``norm_cfg``, ``with_cp``).
        attn_cfg (dict): :class:`PositionMLPWindowAttention` options.
        downsample_norm_cfg (dict): Norm of the downsampling. Defaults to
            ``dict(type='LN', eps=1e-6)``.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 num_heads: int,
                 drop_path_rates: Sequence[float],
                 downsample: bool,
                 block_cfg: dict,
                 attn_cfg: dict,
                 downsample_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.downsample = UMSwinDownsample(
            in_channels, embed_dims,
            downsample_norm_cfg) if downsample else None
        self.shifted = [i % 2 == 1 for i in range(len(drop_path_rates))]
        self.blocks = build_blocks(
            embed_dims,
            partial(PositionMLPWindowAttention, embed_dims, num_heads,
                    **attn_cfg), drop_path_rates, **block_cfg)

    def forward(
        self, x: Tensor, coords: Tensor,
        geometry: Callable[[Tensor, bool], WindowGeometry]
    ) -> Tuple[Tensor, Tensor]:
        """Run the stage.

        Args:
            x (Tensor): ``(B, H, W, C)`` map.
            coords (Tensor): ``(Bc, H, W, 2)`` original token coordinates.
            geometry (callable): ``geometry(coords, shifted)`` gives the
                window geometry of this stage; called once per shift.

        Returns:
            tuple: The output map ``(B, H', W', C')`` and its coordinates.
        """
        if self.downsample is not None:
            x = self.downsample(x)
            coords = coords[:, ::2, ::2]  # follows the 2x2 stride-2 conv
        geos: Dict[bool, WindowGeometry] = {}
        for shifted, blk in zip(self.shifted, self.blocks):
            if shifted not in geos:
                geos[shifted] = geometry(coords, shifted)
            x = blk(x, geos[shifted])
        return x, coords


@register_backbone
class UMSwinTransformer(UMBackbone):
    """Swin Transformer for UM-MAE pre-training and dense prediction.

    One class, one set of parameter names, three forward modes:

    - **dense** (``mask=None``): a normal multi-scale backbone for
      classification, detection and segmentation; any input size (multiples
      of 32 avoid padding), maps padded to whole windows with the padded
      keys masked, outputs ``(B, C_i, H_i, W_i)`` for ``out_indices``.
    - **UM-MAE** (``mask`` and ``sm_mask``): the kept patches (one per 2x2
      block) are gathered into a compact image, which is all the encoder
      sees; secondary-masked patches are replaced by the mask token before
      the patch-embed norm; every token keeps its original coordinate for
      the relative position bias.
    - **SimMIM** (``mask`` only): full grid, masked patches replaced by the
      mask token.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'``, ``'large'``
            (or ``'t'``, ``'s'``, ``'b'``, ``'l'``), or a dict with
            ``embed_dims``, ``depths``, ``num_heads`` and optionally
            ``rpe_hidden_dims``. Defaults to ``'tiny'``.
        patch_size (int): Patch-embedding stride. Defaults to 4.
        in_channels (int): Input channels. Defaults to 3.
        window_size (int): Window size; 8 for pre-training, 16 for
            fine-tuning and dense tasks. A window not smaller than the map
            shrinks to it and stops shifting. Defaults to 16.
        mlp_ratio (float): FFN ratio. Defaults to 4.
        **kwargs: The options every UM backbone has (``mask_patch_size``,
            ``out_indices``, ``frozen_stages``, ``norm_eval``, ``with_cp``,
            ``qkv_bias``, ``drop_rate``, ``attn_drop_rate``,
            ``drop_path_rate`` (0.1), ``norm_cfg``, ``outer_norm_cfg``
            (also the patch-embedding and downsampling norms),
            ``init_cfg``): see :class:`UMBackbone`.
    """
    stem_names = ('patch_embed', 'patch_norm', 'mask_token')
    stage_entry = 'downsample'
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': 96, 'depths': [2, 2, 6, 2],
            'num_heads': [3, 6, 12, 24], 'rpe_hidden_dims': 32}),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': 96, 'depths': [2, 2, 18, 2],
            'num_heads': [3, 6, 12, 24], 'rpe_hidden_dims': 32}),
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': 128, 'depths': [2, 2, 18, 2],
            'num_heads': [4, 8, 16, 32], 'rpe_hidden_dims': 32}),
        **dict.fromkeys(['l', 'large'], {
            'embed_dims': 192, 'depths': [2, 2, 18, 2],
            'num_heads': [6, 12, 24, 48], 'rpe_hidden_dims': 64}),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 patch_size: int = 4,
                 in_channels: int = 3,
                 window_size: int = 16,
                 mlp_ratio: float = 4.,
                 **kwargs) -> None:
        super().__init__(arch, patch_size, **kwargs)
        arch = self.arch_settings
        self.embed_dims = arch['embed_dims']
        self.num_features = [
            self.embed_dims * 2**i for i in range(len(arch['depths']))
        ]
        if not isinstance(window_size, int) or window_size <= 0:
            raise ValueError(
                f'UMSwinTransformer: window_size={window_size!r} must be a '
                f'positive int; use 8 for pre-training, 16 downstream.')
        self.window_size = window_size

        self.patch_embed = nn.Conv2d(in_channels, self.embed_dims,
                                     patch_size, patch_size)
        self.patch_norm = build_norm_layer(self.outer_norm_cfg,
                                           self.embed_dims)[1]
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, self.embed_dims))
        attn_cfg = dict(
            self.attn_cfg, rpe_hidden_dims=arch.get('rpe_hidden_dims', 32))
        self.stages = ModuleList([
            UMSwinStage(self.num_features[max(i - 1, 0)], dims,
                        self.num_heads[i], self.drop_path_rates[i], i > 0,
                        dict(self.block_cfg, mlp_ratio=mlp_ratio), attn_cfg,
                        self.outer_norm_cfg)
            for i, dims in enumerate(self.num_features)
        ])
        self._add_output_norms()
        self._freeze_stages()

    def _extra_init(self) -> None:
        """Xavier-uniform patch embedding (as MAE)."""
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def _stage_geometry(self, coords: Tensor, shifted: bool, quantum: int,
                        radius: Optional[int], stage: int) -> WindowGeometry:
        """Geometry of a stage. ``radius=None``: the regular grid, whose
        geometry (index tensors and masks, no parameters) is cached per
        input size; UM inputs carry per-sample coordinates: built per batch.
        """
        build = partial(build_window_geometry, window_size=self.window_size,
                        quantum=quantum, stage=stage, shifted=shifted,
                        cache=self._size_cache)
        if radius is not None:
            return build(coords, radius=radius)
        hw = tuple(coords.shape[1:3])
        radius = max(min(self.window_size, max(hw)) - 1, 0)
        key = ('geometry', hw, quantum, radius, stage, shifted,
               str(coords.device))
        return self._size_cache.get(
            key, lambda: build(coords, radius=radius))

    def _embed(self, x: Tensor, token_mask: Optional[Tensor]) -> Tensor:
        """Patch-embed, replace masked tokens by the mask token, normalise."""
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self._apply_mask_token(x, token_mask)
        return self.drop_after_pos(self.patch_norm(x))

    def _forward_um(self, c: CompactInput) -> Tuple[Tensor, ...]:
        """UM mode: differences of original coordinates on the compact grid
        are multiples of ``gcd(2**i, t)`` (see ``window_geometry``)."""
        quanta = [math.gcd(2**i, self.tokens_per_patch)
                  for i in range(self.num_stages)]
        radii = [(max(c.full_hw) - 1) // q for q in quanta]
        return self._run_stages(
            self._embed(c.image, c.sm_tokens), c.coords, quanta, radii)

    def _forward_full(self, x: Tensor,
                      mask: Optional[Tensor]) -> Tuple[Tensor, ...]:
        """Dense and SimMIM modes: the regular grid."""
        x = self._embed(x, self._token_mask(x, mask))
        coords = self._grid_coords(*x.shape[1:3], x.device)
        quanta = [2**i for i in range(self.num_stages)]
        return self._run_stages(x, coords, quanta, [None] * self.num_stages)

    def _run_stages(self, x: Tensor, coords: Tensor, quanta: List[int],
                    radii: List[Optional[int]]) -> Tuple[Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            x, coords = stage(
                x, coords,
                partial(self._stage_geometry, quantum=quanta[i],
                        radius=radii[i], stage=i))
            if i in self.out_indices:
                outs.append(self._output(i, x))
        return tuple(outs)

    def token_coordinates(self, x: Tensor, mask: Optional[Tensor] = None,
                          sm_mask: Optional[Tensor] = None) -> List[Tensor]:
        """Original coordinates of every token, per stage.

        Returns one ``(Bc, H_i, W_i, 2)`` float tensor per stage, in that
        stage's token units (first-stage coordinates halved at every
        downsampling), exactly the values the position MLP sees. UM mode
        when both masks are given, else the regular grid.
        """
        if mask is not None and sm_mask is not None:
            coords = self.compact_input(x, mask, sm_mask).coords
        else:
            coords = self._grid_coords(x.shape[2] // self.patch_size,
                                       x.shape[3] // self.patch_size, x.device)
        return [coords[:, ::2**i, ::2**i].float() / 2**i
                for i in range(self.num_stages)]

    @staticmethod
    def _grid_coords(h: int, w: int, device) -> Tensor:
        rows = torch.arange(h, device=device)
        cols = torch.arange(w, device=device)
        return torch.stack(
            torch.meshgrid(rows, cols, indexing='ij'), dim=-1)[None]
