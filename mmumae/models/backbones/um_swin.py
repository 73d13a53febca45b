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
from ..utils import (PreNormBlock, SizeCache, WindowGeometry,
                     build_window_geometry, from_windows, to_windows)
from .base import UMBackbone


class PositionMLPWindowAttention(BaseModule):
    """(Shifted-)window multi-head self-attention, position-MLP bias.

    The bias of a token pair is ``MLP(sign(d) * log(1 + |d|))`` where ``d`` is
    the difference of their original coordinates in this stage's token
    units; the MLP is a 1x1 conv 2 -> ``rpe_hidden_dims``, ReLU, 1x1 conv ->
    ``num_heads``. The map is padded, shifted and cut into windows as the
    :class:`WindowGeometry` says; attention runs through
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Number of heads.
        rpe_hidden_dims (int): Hidden width of the position MLP.
            Defaults to 32.
        qkv_bias (bool): Add a bias to q, k, v. Defaults to True.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Output dropout. Defaults to 0.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 rpe_hidden_dims: int = 32,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
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

    def window_attention(self, x: Tensor, geo: WindowGeometry) -> Tensor:
        """x: ``(B, nW, N, C)`` windows -> same shape."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, h, N, d)
        bias = self.position_bias(geo)
        if geo.attn_mask is not None:
            bias = bias + geo.attn_mask
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))

    def forward(self, x: Tensor, geo: WindowGeometry) -> Tensor:
        """x: ``(B, H, W, C)`` map -> same shape."""
        win = self.window_attention(to_windows(x, geo), geo)
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
        depth (int): Number of blocks.
        num_heads (int): Attention heads.
        downsample (bool): Start with a :class:`UMSwinDownsample`.
        drop_path_rates (Sequence[float]): One rate per block.
        mlp_ratio (float): FFN ratio. Defaults to 4.
        rpe_hidden_dims (int): Hidden width of the position MLP.
            Defaults to 32.
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        norm_cfg (dict): Block norms. Defaults to ``dict(type='LN')``.
        downsample_norm_cfg (dict): Norm of the downsampling. Defaults to
            ``dict(type='LN', eps=1e-6)``.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 downsample: bool,
                 drop_path_rates: Sequence[float],
                 mlp_ratio: float = 4.,
                 rpe_hidden_dims: int = 32,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 with_cp: bool = False,
                 norm_cfg: dict = dict(type='LN'),
                 downsample_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.downsample = UMSwinDownsample(
            in_channels, embed_dims,
            downsample_norm_cfg) if downsample else None
        self.shifted = [i % 2 == 1 for i in range(depth)]
        self.blocks = ModuleList([
            PreNormBlock(
                embed_dims,
                PositionMLPWindowAttention(embed_dims, num_heads,
                                           rpe_hidden_dims, qkv_bias,
                                           attn_drop_rate, drop_rate),
                int(embed_dims * mlp_ratio),
                drop_rate=drop_rate,
                drop_path_rate=drop_path_rates[i],
                norm_cfg=norm_cfg,
                with_cp=with_cp) for i in range(depth)
        ])

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
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention dropout rate. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linearly increasing over
            blocks. Defaults to 0.1.
        out_indices (Sequence[int]): Stages whose (normalised) outputs are
            returned. Defaults to ``(3, )``.
        frozen_stages (int): Freeze the patch embedding and stages up to
            this index; -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep batch-norm layers in eval mode. Defaults to
            False.
        with_cp (bool): Gradient checkpointing in every block. Defaults to
            False.
        mask_patch_size (int): Pixel size of a mask patch (the masks' grid
            unit). Must be a multiple of ``patch_size``. Defaults to 16.
        norm_cfg (dict): Norms inside the blocks (``norm1``, ``norm2``).
            Defaults to ``dict(type='LN')`` (eps 1e-5, as the reference).
        outer_norm_cfg (dict): The patch-embedding norm, the downsampling
            norms and the output norms. Defaults to
            ``dict(type='LN', eps=1e-6)`` (as the reference).
        init_cfg (dict | list, optional): Initialisation config.
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
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 mask_patch_size: int = 16,
                 norm_cfg: dict = dict(type='LN'),
                 outer_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(frozen_stages, norm_eval, init_cfg)
        arch = self._parse_arch(arch)
        self.arch_settings = arch
        self.embed_dims = arch['embed_dims']
        self.num_features = [
            self.embed_dims * 2**i for i in range(len(arch['depths']))
        ]
        self._setup_geometry(arch, patch_size, mask_patch_size, out_indices)
        if not isinstance(window_size, int) or window_size <= 0:
            raise ValueError(
                f'UMSwinTransformer: window_size={window_size!r} must be a '
                f'positive int; use 8 for pre-training, 16 downstream.')
        self.window_size = window_size
        self._geometry_cache = SizeCache(64)
        self._static_cache = SizeCache(128)

        self.patch_embed = nn.Conv2d(in_channels, self.embed_dims,
                                     patch_size, patch_size)
        self.patch_norm = build_norm_layer(outer_norm_cfg,
                                           self.embed_dims)[1]
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, self.embed_dims))
        self.drop_after_pos = nn.Dropout(drop_rate)

        dpr = self._drop_path_rates(drop_path_rate)
        self.stages = ModuleList()
        for i, (depth, dims) in enumerate(zip(self.depths,
                                              self.num_features)):
            self.stages.append(
                UMSwinStage(
                    self.num_features[max(i - 1, 0)],
                    dims,
                    depth,
                    self.num_heads[i],
                    i > 0,
                    dpr[i],
                    mlp_ratio=mlp_ratio,
                    rpe_hidden_dims=arch.get('rpe_hidden_dims', 32),
                    qkv_bias=qkv_bias,
                    drop_rate=drop_rate,
                    attn_drop_rate=attn_drop_rate,
                    with_cp=with_cp,
                    norm_cfg=norm_cfg,
                    downsample_norm_cfg=outer_norm_cfg))
        self._add_output_norms(outer_norm_cfg)
        self._freeze_stages()

    def _extra_init(self) -> None:
        """Xavier-uniform patch embedding (as MAE)."""
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def _stage_geometry(self, coords: Tensor, shifted: bool, quantum: int,
                        radius: Optional[int], stage: int) -> WindowGeometry:
        """Geometry of a stage; cached per input size on the regular grid.

        ``radius=None`` means the regular grid: differences stay inside a
        window. Dense inputs of one size share one geometry (index tensors
        and masks, no parameters), built once and reused; UM inputs carry
        per-sample coordinates and are built per batch.
        """
        build = partial(build_window_geometry, window_size=self.window_size,
                        quantum=quantum, stage=stage, shifted=shifted,
                        cache=self._static_cache)
        if radius is not None:
            return build(coords, radius=radius)
        hw = tuple(coords.shape[1:3])
        radius = max(min(self.window_size, max(hw)) - 1, 0)
        key = (hw, quantum, radius, stage, shifted, str(coords.device))
        return self._geometry_cache.get(
            key, lambda: build(coords, radius=radius))

    def _embed(self, x: Tensor, token_mask: Optional[Tensor]) -> Tensor:
        """Patch-embed, replace masked tokens by the mask token, normalise."""
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self._apply_mask_token(x, token_mask)
        return self.drop_after_pos(self.patch_norm(x))

    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                sm_mask: Optional[Tensor] = None,
                kept_ids: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Run the encoder.

        Args:
            x (Tensor): Images ``(B, C, H, W)``.
            mask (Tensor, optional): ``(B, H/p, W/p)`` bool on the mask-patch
                grid, True = removed. None for dense mode.
            sm_mask (Tensor, optional): ``(B, H/p, W/p)`` bool, secondary
                masking of kept patches. Given (UM-MAE), ``mask`` must be a
                uniform mask and the encoder runs on the compact grid;
                omitted (SimMIM), masked patches become mask tokens on the
                full grid.
            kept_ids (Tensor, optional): ``kept_patch_ids(mask)`` when the
                caller already has them (UM mode). Defaults to None
                (computed here).

        Returns:
            tuple[Tensor]: ``(B, C_i, H_i, W_i)`` for each out index; in UM
            mode the maps are on the compact grid.
        """
        self._check_input(x, um=mask is not None and sm_mask is not None)
        if mask is not None and sm_mask is not None:
            img, token_mask, coords, full_hw = self._compact_input(
                x, mask, sm_mask, kept_ids)
            x = self._embed(img, token_mask)
            quanta = [math.gcd(2**i, self.tokens_per_patch)
                      for i in range(self.num_stages)]
            radii = [(max(full_hw) - 1) // q for q in quanta]
        else:
            token_mask = None if mask is None else self._simmim_tokens(
                x, mask)
            x = self._embed(x, token_mask)
            coords = self._grid_coords(*x.shape[1:3], x.device)
            quanta = [2**i for i in range(self.num_stages)]
            radii = [None] * self.num_stages
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
            coords = self._compact_input(x, mask, sm_mask)[2]
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
