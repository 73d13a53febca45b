"""Swin Transformer for UM-MAE: one backbone for pre-training and dense use.

The relative position bias is not Swin's fixed table but a small MLP of the
log-spaced coordinate difference of two tokens, so it is defined for tokens
that are neighbours in the compact (uniformly sampled) grid but not in the
image. Each token carries its original coordinate; the bias is evaluated
once per distinct difference and gathered, which is exact and cheap.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import DropPath
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from mmumae.registry import register_backbone
from .base import UMBackbone

#: Additive attention mask value for pairs that must not attend (as Swin).
_MASK_VALUE = -100.0


class _WindowGeometry:
    """Everything a stage's blocks share for one window layout.

    Attributes:
        window (tuple): Window size (h, w).
        shift (int): Cyclic shift (0 = none).
        pad (tuple): Padding (bottom, right) added to the map.
        rel_index (Tensor): ``(Bc, nW, N, N)`` index into the bias table.
        attn_mask (Tensor | None): ``(1, nW, 1, N, N)`` additive mask for
            shifted regions and padded keys.
        table_coords (Tensor): ``(1, 2, S, S)`` log-spaced differences the
            position MLP is evaluated on.
    """

    def __init__(self, window, shift, pad, rel_index, attn_mask,
                 table_coords):
        self.window = window
        self.shift = shift
        self.pad = pad
        self.rel_index = rel_index
        self.attn_mask = attn_mask
        self.table_coords = table_coords


def _window_partition(x: Tensor, window: Tuple[int, int]) -> Tensor:
    """(B, H, W, ...) -> (B, nW, wh * ww, ...)."""
    b, h, w = x.shape[:3]
    wh, ww = window
    rest = x.shape[3:]
    x = x.view(b, h // wh, wh, w // ww, ww, *rest)
    x = x.transpose(2, 3)
    return x.reshape(b, (h // wh) * (w // ww), wh * ww, *rest)


def _window_reverse(x: Tensor, window: Tuple[int, int], hw: Tuple[int,
                                                                  int]) -> Tensor:
    """(B, nW, wh * ww, C) -> (B, H, W, C)."""
    b, _, _, c = x.shape
    wh, ww = window
    h, w = hw
    x = x.view(b, h // wh, w // ww, wh, ww, c).transpose(2, 3)
    return x.reshape(b, h, w, c)


class PositionMLPWindowAttention(BaseModule):
    """Window multi-head self-attention with a position-MLP relative bias.

    The bias of a token pair is ``MLP(sign(d) * log(1 + |d|))`` where ``d`` is
    the difference of their original coordinates in this stage's token
    units; the MLP is a 1x1 conv 2 -> ``rpe_hidden_dims``, ReLU, 1x1 conv ->
    ``num_heads``. Attention runs through
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Number of heads.
        rpe_hidden_dims (int): Hidden width of the position MLP.
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

    def position_bias(self, geo: _WindowGeometry) -> Tensor:
        """Bias ``(Bc, nW, heads, N, N)``: MLP once per distinct difference."""
        table = self.rpe_mlp(geo.table_coords.to(self.qkv.weight.dtype))
        table = table.flatten(2)[0]  # (heads, S * S)
        # index_select: its backward is an index_add, cheaper than the
        # accumulating index_put of advanced indexing
        idx = geo.rel_index
        bias = table.index_select(1, idx.flatten()).view(-1, *idx.shape)
        return bias.permute(1, 2, 0, 3, 4)  # (Bc, nW, heads, N, N)

    def forward(self, x: Tensor, geo: _WindowGeometry) -> Tensor:
        """x: ``(B, nW, N, C)`` windows -> same shape."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, self.head_dims)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, h, N, d)
        bias = self.position_bias(geo)
        if geo.attn_mask is not None:
            bias = bias + geo.attn_mask
        bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(2, 3).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))


class UMSwinBlock(BaseModule):
    """A (shifted-)window transformer block.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Number of heads.
        shift (bool): Use shifted windows (when the map is larger than one
            window). Defaults to False.
        mlp_ratio (float): FFN hidden ratio. Defaults to 4.
        rpe_hidden_dims (int): Hidden width of the position MLP.
            Defaults to 32.
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        drop_rate (float): Dropout rate. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        drop_path_rate (float): Stochastic depth. Defaults to 0.
        norm_cfg (dict): Norm config. Defaults to ``dict(type='LN')``.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 shift: bool = False,
                 mlp_ratio: float = 4.,
                 rpe_hidden_dims: int = 32,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.shift = shift
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = PositionMLPWindowAttention(
            embed_dims, num_heads, rpe_hidden_dims, qkv_bias, attn_drop_rate,
            drop_rate)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        hidden = int(embed_dims * mlp_ratio)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dims, hidden), nn.GELU(), nn.Dropout(drop_rate),
            nn.Linear(hidden, embed_dims), nn.Dropout(drop_rate))
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _attention(self, x: Tensor, geo: _WindowGeometry) -> Tensor:
        b, h, w, c = x.shape
        if geo.pad[0] or geo.pad[1]:
            x = F.pad(x, (0, 0, 0, geo.pad[1], 0, geo.pad[0]))
        if geo.shift:
            x = torch.roll(x, (-geo.shift, -geo.shift), dims=(1, 2))
        hp, wp = x.shape[1:3]
        win = _window_partition(x, geo.window)
        win = self.attn(win, geo)
        x = _window_reverse(win, geo.window, (hp, wp))
        if geo.shift:
            x = torch.roll(x, (geo.shift, geo.shift), dims=(1, 2))
        return x[:, :h, :w]

    def _forward(self, x: Tensor, geo: _WindowGeometry) -> Tensor:
        x = x + self.drop_path(self._attention(self.norm1(x), geo))
        return x + self.drop_path(self.ffn(self.norm2(x)))

    def forward(self, x: Tensor, geo: _WindowGeometry) -> Tensor:
        """x: ``(B, H, W, C)`` -> same shape."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, geo, use_reentrant=False)
        return self._forward(x, geo)


class UMSwinDownsample(BaseModule):
    """LayerNorm then a 2x2 stride-2 conv (odd maps are zero-padded).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        norm_cfg (dict): Norm config. Defaults to ``dict(type='LN')``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: dict = dict(type='LN'),
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
    """Optional downsampling followed by alternating W-MSA / SW-MSA blocks."""

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 downsample: bool,
                 drop_path_rates: Sequence[float],
                 block_cfg: dict,
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.downsample = UMSwinDownsample(
            in_channels, embed_dims, norm_cfg) if downsample else None
        self.blocks = ModuleList([
            UMSwinBlock(
                embed_dims,
                num_heads,
                shift=i % 2 == 1,
                drop_path_rate=drop_path_rates[i],
                norm_cfg=norm_cfg,
                **block_cfg) for i in range(depth)
        ])


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
        norm_cfg (dict): Norm config. Defaults to ``dict(type='LN')``.
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
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(frozen_stages, norm_eval, init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.depths = list(self.arch_settings['depths'])
        self.num_heads = list(self.arch_settings['num_heads'])
        self.num_stages = len(self.depths)
        if len(self.num_heads) != self.num_stages:
            raise ValueError('UMSwinTransformer: arch depths and num_heads '
                             'must have the same length.')
        if mask_patch_size % patch_size:
            raise ValueError(
                f'UMSwinTransformer: mask_patch_size={mask_patch_size} must be '
                f'a multiple of patch_size={patch_size}.')
        self.patch_size = patch_size
        self.mask_patch_size = mask_patch_size
        self.tokens_per_patch = mask_patch_size // patch_size
        self.window_size = window_size
        self.out_indices = self._parse_out_indices(out_indices,
                                                   self.num_stages)
        self._geometry_cache: Dict[tuple, _WindowGeometry] = {}
        self._static_cache: Dict[tuple, Tensor] = {}

        self.patch_embed = nn.Conv2d(in_channels, self.embed_dims,
                                     patch_size, patch_size)
        self.patch_norm = build_norm_layer(norm_cfg, self.embed_dims)[1]
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, self.embed_dims))
        self.drop_after_pos = nn.Dropout(drop_rate)

        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        block_cfg = dict(
            mlp_ratio=mlp_ratio,
            rpe_hidden_dims=self.arch_settings.get('rpe_hidden_dims', 32),
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            with_cp=with_cp)
        self.stages = ModuleList()
        self.num_features = []
        in_ch = self.embed_dims
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            dims = self.embed_dims * 2**i
            start = sum(self.depths[:i])
            self.stages.append(
                UMSwinStage(in_ch, dims, depth, heads, i > 0,
                            dpr[start:start + depth], block_cfg, norm_cfg))
            self.num_features.append(dims)
            in_ch = dims
        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg,
                                             self.num_features[i])[1])
        self._freeze_stages()

    def _extra_init(self) -> None:
        """Xavier-uniform patch embedding (as MAE)."""
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    # --------------------------------------------------------------- geometry
    def _stage_window(self, hw: Tuple[int, int],
                      shifted: bool) -> Tuple[Tuple[int, int], int]:
        ws = self.window_size
        if max(hw) <= ws:  # a window covers the map: shrink, no shift
            return (hw[0], hw[1]), 0
        return (ws, ws), (ws // 2 if shifted else 0)

    def _geometry(self, coords: Tensor, quantum: int, radius: int,
                  stage: int, shifted: bool) -> _WindowGeometry:
        """Window layout, bias-table index and masks for one stage.

        Args:
            coords (Tensor): ``(Bc, H, W, 2)`` long, original coordinates in
                first-stage token units.
            quantum (int): All coordinate differences are multiples of it.
            radius (int): Largest |difference| / quantum kept in the table;
                larger ones (only between masked pairs) are clamped.
            stage (int): Stage index; real differences are in units of
                ``2 ** stage`` first-stage tokens.
        """
        h, w = coords.shape[1:3]
        window, shift, pad, attn_mask = self._window_layout(
            h, w, shifted, coords.device)
        c = coords
        if pad[0] or pad[1]:
            c = F.pad(c.permute(0, 3, 1, 2), (0, pad[1], 0, pad[0]),
                      mode='replicate').permute(0, 2, 3, 1)
        if shift:
            c = torch.roll(c, (-shift, -shift), dims=(1, 2))
        cw = _window_partition(c, window)  # (Bc, nW, N, 2)
        diff = cw[:, :, :, None, :] - cw[:, :, None, :, :]
        diff = torch.div(diff, quantum, rounding_mode='floor')
        diff = diff.clamp(-radius, radius) + radius
        side = 2 * radius + 1
        rel_index = diff[..., 0] * side + diff[..., 1]
        table_coords = self._table_coords(radius, quantum, stage,
                                          coords.device)
        return _WindowGeometry(window, shift, pad, rel_index, attn_mask,
                               table_coords)

    def _cached(self, key: tuple, build):
        """Small cache for tensors that depend only on sizes (no params)."""
        value = self._static_cache.get(key)
        if value is None:
            if len(self._static_cache) >= 128:
                self._static_cache.clear()
            value = self._static_cache[key] = build()
        return value

    def _window_layout(self, h: int, w: int, shifted: bool, device):
        """Window, shift, padding and the additive mask of shifted regions
        and padded keys, ``(1, nW, 1, N, N)`` or None, for an h x w map."""
        window, shift = self._stage_window((h, w), shifted)
        pad = ((-h) % window[0], (-w) % window[1])
        if not (shift or pad[0] or pad[1]):
            return window, shift, pad, None

        def build():
            hp, wp = h + pad[0], w + pad[1]
            region = torch.zeros(hp, wp, device=device)
            if shift:
                slices_h = (slice(0, -window[0]), slice(-window[0], -shift),
                            slice(-shift, None))
                slices_w = (slice(0, -window[1]), slice(-window[1], -shift),
                            slice(-shift, None))
                rid = 0
                for sh in slices_h:
                    for sw in slices_w:
                        region[sh, sw] = rid
                        rid += 1
            padded = torch.zeros(hp, wp, dtype=torch.bool, device=device)
            padded[h:, :] = True
            padded[:, w:] = True
            if shift:  # the region ids already live in the shifted frame
                padded = torch.roll(padded, (-shift, -shift), dims=(0, 1))
            rw = _window_partition(region[None, ..., None], window)[0, ..., 0]
            pw = _window_partition(padded[None, ..., None], window)[0, ..., 0]
            blocked = (rw[:, :, None] != rw[:, None, :]) | pw[:, None, :]
            mask = torch.zeros(blocked.shape, device=device)
            return mask.masked_fill(blocked, _MASK_VALUE)[None, :, None]

        attn_mask = self._cached(('mask', h, w, shift, str(device)), build)
        return window, shift, pad, attn_mask

    def _table_coords(self, radius: int, quantum: int, stage: int,
                      device) -> Tensor:
        """``(1, 2, S, S)`` log-spaced differences the MLP is evaluated on."""

        def build():
            ks = torch.arange(-radius, radius + 1, device=device,
                              dtype=torch.float32) * (quantum / 2**stage)
            ks = torch.sign(ks) * torch.log1p(ks.abs())
            return torch.stack(torch.meshgrid(ks, ks, indexing='ij'))[None]

        return self._cached(('table', radius, quantum, stage, str(device)),
                            build)

    def _stage_geometry(self, coords: Tensor, quantum: int, radius: int,
                        stage: int, shifted: bool,
                        regular: bool) -> _WindowGeometry:
        """Geometry of a stage; cached per input size on the regular grid.

        Dense inputs of one size share one geometry (index tensors and
        masks, no parameters), so it is built once and reused; UM inputs
        carry per-sample coordinates and are built per batch.
        """
        if not regular:
            return self._geometry(coords, quantum, radius, stage, shifted)
        key = (tuple(coords.shape[1:3]), quantum, radius, stage, shifted,
               str(coords.device))
        geo = self._geometry_cache.get(key)
        if geo is None:
            if len(self._geometry_cache) >= 64:
                self._geometry_cache.clear()
            geo = self._geometry(coords, quantum, radius, stage, shifted)
            self._geometry_cache[key] = geo
        return geo

    # ---------------------------------------------------------------- embeds
    def _embed(self, x: Tensor, token_mask: Optional[Tensor]) -> Tensor:
        """Patch-embed, replace masked tokens by the mask token, normalise."""
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self._apply_mask_token(x, token_mask)
        return self.drop_after_pos(self.patch_norm(x))

    # --------------------------------------------------------------- forward
    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                sm_mask: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
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

        Returns:
            tuple[Tensor]: ``(B, C_i, H_i, W_i)`` for each out index; in UM
            mode the maps are on the compact grid.
        """
        self._check_input(x)
        if mask is not None and sm_mask is not None:
            img, token_mask, coords, full_hw = self._compact_input(
                x, mask, sm_mask)
            x = self._embed(img, token_mask)
            extent = max(full_hw)
            quanta = [math.gcd(2**i, self.tokens_per_patch)
                      for i in range(self.num_stages)]
            radii = [(extent - 1) // q for q in quanta]
        else:
            token_mask = None if mask is None else self._simmim_tokens(
                x, mask)
            x = self._embed(x, token_mask)
            h, w = x.shape[1:3]
            coords = self._grid_coords(h, w, x.device)
            quanta = [2**i for i in range(self.num_stages)]
            radii = [None] * self.num_stages
        return self._forward_stages(x, coords, quanta, radii)

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
        out = []
        for i in range(self.num_stages):
            if i > 0:
                coords = self._downsample_coords(coords)
            out.append(coords.float() / 2**i)
        return out

    @staticmethod
    def _downsample_coords(coords: Tensor) -> Tensor:
        """Coordinates follow the 2x2 stride-2 conv: keep the top-left."""
        return coords[:, ::2, ::2]

    @staticmethod
    def _grid_coords(h: int, w: int, device) -> Tensor:
        rows = torch.arange(h, device=device)
        cols = torch.arange(w, device=device)
        return torch.stack(
            torch.meshgrid(rows, cols, indexing='ij'), dim=-1)[None]

    def _forward_stages(self, x: Tensor, coords: Tensor, quanta: List[int],
                        radii: List[Optional[int]]) -> Tuple[Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            if stage.downsample is not None:
                x = stage.downsample(x)
                coords = self._downsample_coords(coords)
            radius = radii[i]
            if radius is None:  # regular grid: differences stay in a window
                radius = max(min(self.window_size, max(x.shape[1:3])) - 1, 0)
            regular = radii[i] is None
            geos = {}
            for blk in stage.blocks:
                if blk.shift not in geos:
                    geos[blk.shift] = self._stage_geometry(
                        coords, quanta[i], radius, i, blk.shift, regular)
                x = blk(x, geos[blk.shift])
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
        return tuple(outs)
