"""PVT for UM-MAE: one backbone for pre-training and dense use.

Spatial-reduction attention pools keys/values by average pooling followed by
a 1x1 conv and LayerNorm (present at every stage, ``sr_ratio`` 1 included),
so the same weights run on the compact pre-training grid (sr 4-2-1-1) and on
full images (sr 8-4-2-1). The only position information is a fixed 2-D
sin-cos embedding at stage 1, gathered with the tokens in pre-training.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import DropPath
from mmengine.model import BaseModule, ModuleList
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from torch import Tensor

from mmumae.registry import register_backbone
from .base import UMBackbone


class AvgPoolSRAttention(BaseModule):
    """Spatial-reduction attention with average pooling.

    Queries come from every token; keys and values from the map average
    pooled by ``sr_ratio``, then a 1x1 conv and LayerNorm.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Heads.
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Output dropout. Defaults to 0.
        norm_cfg (dict): Norm after the reduction. Defaults to LN.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, embed_dims * 2, bias=qkv_bias)
        self.sr = nn.Conv2d(embed_dims, embed_dims, 1)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, hw: Tuple[int, int],
                sr_ratio: int) -> Tensor:
        """x: ``(B, H*W, C)`` -> same shape."""
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.num_heads, self.head_dims).transpose(1, 2)
        kv = x.transpose(1, 2).reshape(b, c, *hw)
        if sr_ratio > 1:
            kv = F.avg_pool2d(kv, sr_ratio, sr_ratio, ceil_mode=True)
        kv = self.norm(self.sr(kv).flatten(2).transpose(1, 2))
        kv = self.kv(kv).view(b, -1, 2, self.num_heads, self.head_dims)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class UMPVTBlock(BaseModule):
    """Pre-norm transformer block with spatial-reduction attention.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Heads.
        mlp_ratio (float): FFN ratio. Defaults to 4.
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        drop_rate (float): Dropout. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        drop_path_rate (float): Stochastic depth. Defaults to 0.
        norm_cfg (dict): Norm config. Defaults to LN.
        with_cp (bool): Gradient checkpointing. Defaults to False.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = AvgPoolSRAttention(embed_dims, num_heads, qkv_bias,
                                       attn_drop_rate, drop_rate, norm_cfg)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        hidden = int(embed_dims * mlp_ratio)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dims, hidden), nn.GELU(), nn.Dropout(drop_rate),
            nn.Linear(hidden, embed_dims), nn.Dropout(drop_rate))
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _forward(self, x: Tensor, hw: Tuple[int, int],
                 sr_ratio: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw, sr_ratio))
        return x + self.drop_path(self.ffn(self.norm2(x)))

    def forward(self, x: Tensor, hw: Tuple[int, int],
                sr_ratio: int) -> Tensor:
        """x: ``(B, H*W, C)`` -> same shape."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(
                self._forward, x, hw, sr_ratio, use_reentrant=False)
        return self._forward(x, hw, sr_ratio)


class UMPVTStage(BaseModule):
    """Patch embedding (4x4/s4 conv first, 2x2/s2 conv after) + blocks."""

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 patch_size: int,
                 depth: int,
                 num_heads: int,
                 mlp_ratio: float,
                 drop_path_rates: Sequence[float],
                 block_cfg: dict,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.patch_embed = nn.Conv2d(in_channels, embed_dims, patch_size,
                                     patch_size)
        self.blocks = ModuleList([
            UMPVTBlock(
                embed_dims,
                num_heads,
                mlp_ratio=mlp_ratio,
                drop_path_rate=drop_path_rates[i],
                **block_cfg) for i in range(depth)
        ])


@register_backbone
class UMPVT(UMBackbone):
    """Pyramid Vision Transformer for UM-MAE pre-training and dense use.

    Forward modes as :class:`UMSwinTransformer`: dense (``mask=None``),
    UM-MAE (``mask`` + ``sm_mask``: compact grid, SM tokens replaced by the
    un-normalised mask token, then the sin-cos embedding of each token's
    original position added) and SimMIM (``mask`` only, full grid).

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'medium'``, ``'large'``
            (or ``'t'``, ``'s'``, ``'m'``, ``'l'``) or a dict with
            ``embed_dims``, ``depths``, ``num_heads``, ``mlp_ratios``.
            Defaults to ``'small'``.
        in_channels (int): Input channels. Defaults to 3.
        patch_size (int): Stride of the first patch embedding. Defaults to 4.
        sr_ratios (Sequence[int]): Key/value pooling per stage: (4, 2, 1, 1)
            for pre-training, (8, 4, 2, 1) for fine-tuning and dense tasks.
            Defaults to (8, 4, 2, 1).
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        drop_rate (float): Dropout. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linear over blocks.
            Defaults to 0.1.
        out_indices (Sequence[int]): Stages to output (each normalised).
            Defaults to ``(3, )``.
        frozen_stages (int): Freeze stages up to this index; -1 = none.
            Defaults to -1.
        norm_eval (bool): Keep batch norms in eval mode. Defaults to False.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        mask_patch_size (int): Pixel size of a mask patch. Defaults to 16.
        norm_cfg (dict): Norm config. Defaults to ``dict(type='LN')``.
        init_cfg (dict | list, optional): Initialisation config.
    """
    stem_names = ('mask_token', )
    stage_entry = 'patch_embed'
    arch_zoo: Dict[str, dict] = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': [64, 128, 320, 512], 'depths': [2, 2, 2, 2],
            'num_heads': [1, 2, 5, 8], 'mlp_ratios': [8, 8, 4, 4]}),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': [64, 128, 320, 512], 'depths': [3, 4, 6, 3],
            'num_heads': [1, 2, 5, 8], 'mlp_ratios': [8, 8, 4, 4]}),
        **dict.fromkeys(['m', 'medium'], {
            'embed_dims': [64, 128, 320, 512], 'depths': [3, 4, 18, 3],
            'num_heads': [1, 2, 5, 8], 'mlp_ratios': [8, 8, 4, 4]}),
        **dict.fromkeys(['l', 'large'], {
            'embed_dims': [64, 128, 320, 512], 'depths': [3, 8, 27, 3],
            'num_heads': [1, 2, 5, 8], 'mlp_ratios': [8, 8, 4, 4]}),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 patch_size: int = 4,
                 sr_ratios: Sequence[int] = (8, 4, 2, 1),
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
        self.embed_dims = list(self.arch_settings['embed_dims'])
        self.depths = list(self.arch_settings['depths'])
        self.num_heads = list(self.arch_settings['num_heads'])
        mlp_ratios = list(self.arch_settings.get('mlp_ratios', [4] *
                                                 len(self.depths)))
        self.num_stages = len(self.depths)
        if not (len(self.embed_dims) == len(self.num_heads) == len(mlp_ratios)
                == self.num_stages == len(sr_ratios)):
            raise ValueError('UMPVT: embed_dims, depths, num_heads, '
                             'mlp_ratios and sr_ratios need one entry per '
                             'stage.')
        if mask_patch_size % patch_size:
            raise ValueError(f'UMPVT: mask_patch_size={mask_patch_size} must '
                             f'be a multiple of patch_size={patch_size}.')
        self.patch_size = patch_size
        self.mask_patch_size = mask_patch_size
        self.tokens_per_patch = mask_patch_size // patch_size
        self.sr_ratios = list(sr_ratios)
        self.out_indices = self._parse_out_indices(out_indices,
                                                   self.num_stages)
        self._pos_cache: Dict[tuple, Tensor] = {}

        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims[0]))
        self.drop_after_pos = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        block_cfg = dict(
            qkv_bias=qkv_bias,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            norm_cfg=norm_cfg,
            with_cp=with_cp)
        self.stages = ModuleList()
        in_ch = in_channels
        for i in range(self.num_stages):
            start = sum(self.depths[:i])
            self.stages.append(
                UMPVTStage(in_ch, self.embed_dims[i],
                           patch_size if i == 0 else 2, self.depths[i],
                           self.num_heads[i], mlp_ratios[i],
                           dpr[start:start + self.depths[i]], block_cfg))
            in_ch = self.embed_dims[i]
        self.num_features = self.embed_dims
        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, self.embed_dims[i])[1])
        self._freeze_stages()

    # ---------------------------------------------------------------- helpers
    def position_embedding(self, hw: Tuple[int, int], device,
                           dtype) -> Tensor:
        """Fixed 2-D sin-cos embedding ``(H*W, C)`` of the stage-1 grid."""
        key = (hw, str(device), dtype)
        if key not in self._pos_cache:
            pe = build_2d_sincos_position_embedding(
                (hw[1], hw[0]), self.embed_dims[0], cls_token=False)
            self._pos_cache[key] = pe[0].to(device=device, dtype=dtype)
        return self._pos_cache[key]

    # --------------------------------------------------------------- forward
    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                sm_mask: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Run the encoder.

        Args:
            x (Tensor): Images ``(B, C, H, W)``.
            mask (Tensor, optional): ``(B, H/p, W/p)`` bool, True = removed.
            sm_mask (Tensor, optional): ``(B, H/p, W/p)`` bool; given, the
                encoder runs UM-MAE on the compact grid, else SimMIM.

        Returns:
            tuple[Tensor]: ``(B, C_i, H_i, W_i)`` for each out index.
        """
        self._check_input(x)
        full_hw = (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)
        stem = self.stages[0].patch_embed
        if mask is not None and sm_mask is not None:
            img, sm_tokens, coords, _ = self._compact_input(x, mask, sm_mask)
            token_mask = sm_tokens.flatten(1)
            pos_index = (coords[..., 0] * full_hw[1] + coords[..., 1]).flatten(1)
            x = stem(img)
            hw = x.shape[2:]
            x = x.flatten(2).transpose(1, 2)
            pe = self.position_embedding(full_hw, x.device, x.dtype)
            pos = pe[pos_index]
        else:
            token_mask = None if mask is None else self._simmim_tokens(
                x, mask).flatten(1)
            x = stem(x)
            hw = x.shape[2:]
            x = x.flatten(2).transpose(1, 2)
            pos = self.position_embedding(tuple(hw), x.device, x.dtype)[None]
        x = self._apply_mask_token(x, token_mask)
        x = self.drop_after_pos(x + pos)
        return self._forward_stages(x, tuple(hw))

    def _forward_stages(self, x: Tensor,
                        hw: Tuple[int, int]) -> Tuple[Tensor, ...]:
        outs = []
        b = x.shape[0]
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = x.transpose(1, 2).reshape(b, -1, *hw)
                x = F.pad(x, (0, hw[1] % 2, 0, hw[0] % 2))
                x = stage.patch_embed(x)
                hw = tuple(x.shape[2:])
                x = x.flatten(2).transpose(1, 2)
            for blk in stage.blocks:
                x = blk(x, hw, self.sr_ratios[i])
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.transpose(1, 2).reshape(b, -1, *hw))
        return tuple(outs)
