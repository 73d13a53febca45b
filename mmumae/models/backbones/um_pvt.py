"""PVT for UM-MAE: one backbone for pre-training and dense use.

Spatial-reduction attention pools keys/values by average pooling followed by
a 1x1 conv and LayerNorm (present at every stage, ``sr_ratio`` 1 included),
so the same weights run on the compact pre-training grid (sr 4-2-1-1) and on
full images (sr 8-4-2-1). The only position information is a 2-D sin-cos
embedding at stage 1 (fixed, or learnable as in the reference fine-tuning
model), gathered with the tokens in pre-training.
"""
import math
from functools import partial
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from mmengine.utils import to_2tuple
from mmpretrain.models.utils import resize_pos_embed
from torch import Tensor

from mmumae.registry import register_backbone
from ..utils import AttentionBase, build_blocks, sincos_2d_colfirst
from .base import CompactInput, UMBackbone


class AvgPoolSRAttention(AttentionBase):
    """Spatial-reduction attention with average pooling.

    Queries come from every token; keys and values from the map average
    pooled by ``sr_ratio``, then a 1x1 conv and LayerNorm.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Heads.
        sr_ratio (int): Key/value pooling factor. Defaults to 1.
        norm_cfg (dict): Norm after the reduction. Defaults to
            ``dict(type='LN')`` (eps 1e-5, as the reference).
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        **kwargs: ``attn_drop``, ``proj_drop``, ``init_cfg`` of
            :class:`AttentionBase`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 sr_ratio: int = 1,
                 norm_cfg: dict = dict(type='LN'),
                 qkv_bias: bool = True,
                 **kwargs) -> None:
        super().__init__(embed_dims, num_heads, **kwargs)
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, embed_dims * 2, bias=qkv_bias)
        self.sr = nn.Conv2d(embed_dims, embed_dims, 1)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        """x: ``(B, H*W, C)`` -> same shape."""
        b, n, c = x.shape
        q = self.q(x).view(b, n, self.num_heads, self.head_dims)
        kv = x.transpose(1, 2).reshape(b, c, *hw)
        if self.sr_ratio > 1:
            kv = F.avg_pool2d(kv, self.sr_ratio, self.sr_ratio,
                              ceil_mode=True)
        kv = self.norm(self.sr(kv).flatten(2).transpose(1, 2))
        kv = self.kv(kv).view(b, -1, 2, self.num_heads, self.head_dims)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.attend(q.transpose(1, 2), k, v)


class UMPVTStage(BaseModule):
    """Patch embedding (a ``patch_size`` stride conv), then the blocks.

    Args:
        in_channels (int): Input channels.
        embed_dims (int): Channels of the stage.
        patch_size (int): Stride of the patch embedding (4 first, then 2).
        num_heads (int): Attention heads.
        sr_ratio (int): Key/value pooling factor.
        drop_path_rates (Sequence[float]): One per block (sets the depth).
        block_cfg (dict): :func:`build_blocks` options (``mlp_ratio``,
            ``drop_rate``, ``norm_cfg``, ``with_cp``); ``norm_cfg`` also
            serves the spatial reduction.
        attn_cfg (dict): :class:`AvgPoolSRAttention` options.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 patch_size: int,
                 num_heads: int,
                 sr_ratio: int,
                 drop_path_rates: Sequence[float],
                 block_cfg: dict,
                 attn_cfg: dict,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(in_channels, embed_dims, patch_size,
                                     patch_size)
        self.blocks = build_blocks(
            embed_dims,
            partial(AvgPoolSRAttention, embed_dims, num_heads, sr_ratio,
                    block_cfg.get('norm_cfg', dict(type='LN')), **attn_cfg),
            drop_path_rates, **block_cfg)

    def forward(self,
                x: Tensor,
                prepare: Optional[Callable[[Tensor], Tensor]] = None
                ) -> Tensor:
        """Run the stage.

        Args:
            x (Tensor): ``(B, C, H, W)`` image or map; zero-padded to a
                multiple of the patch size.
            prepare (callable, optional): Applied to the ``(B, N, C)``
                tokens after the patch embedding (the first stage adds the
                mask token and the position embedding). Defaults to None.

        Returns:
            Tensor: ``(B, H', W', C')`` channels-last map.
        """
        p = self.patch_size
        if x.shape[2] % p or x.shape[3] % p:
            x = F.pad(x, (0, -x.shape[3] % p, 0, -x.shape[2] % p))
        x = self.patch_embed(x)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        if prepare is not None:
            x = prepare(x)
        for blk in self.blocks:
            x = blk(x, (h, w))
        return x.view(b, h, w, c)


@register_backbone
class UMPVT(UMBackbone):
    """Pyramid Vision Transformer for UM-MAE pre-training and dense use.

    Forward modes as :class:`UMSwinTransformer`: dense (``mask=None``),
    UM-MAE (``mask`` + ``sm_mask``: compact grid, SM tokens replaced by the
    un-normalised mask token, then the sin-cos embedding of each token's
    original position added) and SimMIM (``mask`` only, full grid).

    Position embedding: by default the fixed column-first sin-cos table of
    the stage-1 grid, computed for any input size and not stored in the
    state dict. With ``learnable_pos_embed=True`` (the reference
    fine-tuning model) it is a parameter ``pos_embed`` of shape
    ``(1, (pretrain_img_size / patch_size)**2, C0)``, initialised from that
    table, resized bicubically for other grids and gathered like the fixed
    one in UM mode. A checkpoint's ``pos_embed`` is loaded only by a
    learnable model; a fixed-table model ignores it with a warning.

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
        learnable_pos_embed (bool): Learn the stage-1 position embedding
            (parameter ``pos_embed``). Defaults to False.
        pretrain_img_size (int | tuple): Image size the learnable
            ``pos_embed`` is stored for. Defaults to 256.
        **kwargs: The options every UM backbone has (``mask_patch_size``,
            ``out_indices``, ``frozen_stages``, ``norm_eval``, ``with_cp``,
            ``qkv_bias``, ``drop_rate``, ``attn_drop_rate``,
            ``drop_path_rate`` (0.1), ``norm_cfg`` (blocks and spatial
            reduction), ``outer_norm_cfg`` (output norms), ``init_cfg``):
            see :class:`UMBackbone`.
    """
    stem_names = ('mask_token', 'pos_embed')
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
                 learnable_pos_embed: bool = False,
                 pretrain_img_size: Union[int, Tuple[int, int]] = 256,
                 **kwargs) -> None:
        super().__init__(arch, patch_size, **kwargs)
        arch = self.arch_settings
        self.embed_dims = list(arch['embed_dims'])
        mlp_ratios = list(arch.get('mlp_ratios', [4] * self.num_stages))
        if not (len(self.embed_dims) == len(mlp_ratios) == self.num_stages
                == len(sr_ratios)):
            raise ValueError('UMPVT: embed_dims, depths, num_heads, '
                             'mlp_ratios and sr_ratios need one entry per '
                             'stage.')
        self.sr_ratios = list(sr_ratios)
        self.num_features = self.embed_dims

        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims[0]))
        self.learnable_pos_embed = learnable_pos_embed
        self.pos_grid = tuple(s // patch_size
                              for s in to_2tuple(pretrain_img_size))
        if learnable_pos_embed:
            self.pos_embed = nn.Parameter(
                sincos_2d_colfirst(*self.pos_grid, self.embed_dims[0])[None])
        self.register_load_state_dict_pre_hook(self._pos_embed_pre_hook)
        self.stages = ModuleList([
            UMPVTStage(in_channels if i == 0 else self.embed_dims[i - 1],
                       dims, patch_size if i == 0 else 2, self.num_heads[i],
                       self.sr_ratios[i], self.drop_path_rates[i],
                       dict(self.block_cfg, mlp_ratio=mlp_ratios[i]),
                       self.attn_cfg)
            for i, dims in enumerate(self.embed_dims)
        ])
        self._add_output_norms()
        self._freeze_stages()

    def position_embedding(self, hw: Tuple[int, int], device,
                           dtype) -> Tensor:
        """Stage-1 position embedding ``(H*W, C)`` of an ``hw`` grid."""
        hw = tuple(hw)
        if self.learnable_pos_embed:
            pe = resize_pos_embed(self.pos_embed, self.pos_grid, hw,
                                  mode='bicubic', num_extra_tokens=0)
            return pe[0].to(dtype)
        return self._size_cache.get(
            ('pos_embed', hw, str(device), dtype),
            lambda: sincos_2d_colfirst(*hw, self.embed_dims[0]).to(
                device=device, dtype=dtype))

    def _allowed_missing(self) -> set:
        """A learnable ``pos_embed`` may be missing from a checkpoint of a
        fixed-table model: it keeps its sin-cos initialisation."""
        return super()._allowed_missing() | {'pos_embed'}

    @staticmethod
    def _pos_embed_pre_hook(module: 'UMPVT', state_dict: dict, prefix: str,
                            *args) -> None:
        """``load_state_dict`` pre-hook (as mmpretrain's ViT): a learnable
        model resizes a square ``pos_embed`` of another grid bicubically to
        its own; a fixed-table model drops one, with a warning.

        Registered on the backbone, so every way a checkpoint is loaded
        (``init_cfg`` Pretrained, the runner's ``load_from``/``resume``, a
        plain ``load_state_dict``) adapts it the same way, whatever prefix
        (``backbone.``) the backbone has in the whole model.
        """
        key = prefix + 'pos_embed'
        pe = state_dict.get(key)
        if not isinstance(pe, Tensor):
            return
        if not module.learnable_pos_embed:
            del state_dict[key]
            print_log(
                f'UMPVT: the checkpoint\'s {key} is ignored: this model uses '
                f'the fixed sin-cos table; set learnable_pos_embed=True to '
                f'load it.', logger='current', level=30)
            return
        side = math.isqrt(pe.shape[1]) if pe.dim() == 3 else 0
        if tuple(pe.shape) == tuple(module.pos_embed.shape) or \
                side * side != pe.shape[1] or \
                pe.shape[2] != module.pos_embed.shape[2]:
            return  # equal, or a shape error the key check reports
        state_dict[key] = resize_pos_embed(pe, (side, side), module.pos_grid,
                                           'bicubic', 0)
        print_log(f'UMPVT: resized the checkpoint\'s {key} from '
                  f'{side}x{side} to {module.pos_grid[0]}x'
                  f'{module.pos_grid[1]}.', logger='current')

    def _forward_um(self, c: CompactInput) -> Tuple[Tensor, ...]:
        """UM mode: each compact token takes the embedding of its original
        position."""
        pe = self.position_embedding(c.full_hw, c.image.device,
                                     c.image.dtype)
        idx = c.coords[..., 0] * c.full_hw[1] + c.coords[..., 1]
        return self._run_stages(c.image, c.sm_tokens.flatten(1),
                                pe[idx.flatten(1)])

    def _forward_full(self, x: Tensor,
                      mask: Optional[Tensor]) -> Tuple[Tensor, ...]:
        """Dense and SimMIM modes: the whole stage-1 table."""
        token_mask = self._token_mask(x, mask)
        p = self.patch_size
        hw = (-(-x.shape[2] // p), -(-x.shape[3] // p))
        pe = self.position_embedding(hw, x.device, x.dtype)
        return self._run_stages(
            x, None if token_mask is None else token_mask.flatten(1), pe[None])

    def _run_stages(self, x: Tensor, token_mask: Optional[Tensor],
                    pos: Tensor) -> Tuple[Tensor, ...]:

        def prepare(tokens: Tensor) -> Tensor:
            tokens = self._apply_mask_token(tokens, token_mask)
            return self.drop_after_pos(tokens + pos)

        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, prepare if i == 0 else None)
            if i in self.out_indices:
                outs.append(self._output(i, x))
            x = x.permute(0, 3, 1, 2)
        return tuple(outs)
