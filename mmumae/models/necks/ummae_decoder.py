"""UM-MAE decoder: from the compact last-stage map to per-patch pixels."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from mmengine.utils import to_2tuple
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from torch import Tensor

from mmumae.registry import MODELS
from ..utils import (kept_patch_ids, masked_patch_ids, refuse_unknown_args,
                     sincos_2d_colfirst, size_rule)

_POS_ORDERS = ('original', 'reference')
_RENAMED = dict(patch_size="renamed to 'mask_patch_size'",
                in_chans="renamed to 'img_channels'")


@MODELS.register_module()
class UMMAEPretrainDecoder(BaseModule):
    """MAE-style decoder for UM-MAE on pyramid (or plain) encoders.

    The encoder's last map on the compact grid, ``(B, C, h, w)`` (Swin-T:
    768 x 4 x 4), goes through a Linear to ``upscale**2 * embed_dims`` and a
    PixelShuffle, giving one token per kept mask patch in block order (8 x 8
    = 64 at 256 px). Each gets the fixed 2-D sin-cos embedding of its
    patch position (column-first channels, as the reference); a learnable
    mask token (plus its position embedding) is appended for every
    US-removed patch; transformer blocks, LayerNorm and a
    Linear predict the ``mask_patch_size**2 * img_channels`` pixels of every
    patch. The output is restored to raster order on the full mask grid.

    Position order: ``'original'`` (default) gives each visible token the
    embedding of its own original patch. ``'reference'`` reproduces the
    official implementation, which takes the visible embeddings in raster
    order of the kept patches although the tokens come in block order; use
    it only to continue from converted official checkpoints or to check
    equivalence with that code.

    Args:
        in_channels (int): Channels of the encoder's last map. Defaults to 768.
        embed_dims (int): Decoder width. Defaults to 512.
        depth (int): Decoder blocks (Swin-L: 8). Defaults to 2.
        num_heads (int): Heads. Defaults to 16.
        mlp_ratio (float): FFN ratio. Defaults to 4.
        upscale (int): PixelShuffle factor, encoder stride / mask-patch size
            on the compact grid (2 for Swin/PVT, 1 for ViT). Defaults to 2.
        input_size (int | tuple): Pre-training image size (H, W), a
            multiple of ``2 * mask_patch_size``. Defaults to 256.
        mask_patch_size (int): Pixel size of the mask patch predicted per
            token. Defaults to 16.
        img_channels (int): Channels of the reconstructed image. Defaults
            to 3.
        pos_order (str): ``'original'`` or ``'reference'``. Defaults to
            ``'original'``.
        norm_cfg (dict): Norm config. Defaults to LN with eps 1e-6.
        init_cfg (dict, optional): Initialisation config. Defaults to None
            (Xavier-uniform linears, unit LayerNorms).
        **kwargs: Refused; an old name (``patch_size``, ``in_chans``) with
            its new one.
    """

    def __init__(self,
                 in_channels: int = 768,
                 embed_dims: int = 512,
                 depth: int = 2,
                 num_heads: int = 16,
                 mlp_ratio: float = 4.,
                 upscale: int = 2,
                 input_size: Union[int, Tuple[int, int]] = 256,
                 mask_patch_size: int = 16,
                 img_channels: int = 3,
                 pos_order: str = 'original',
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        refuse_unknown_args('UMMAEPretrainDecoder', kwargs, _RENAMED)
        super().__init__(init_cfg=init_cfg or [
            dict(type='Xavier', layer='Linear', distribution='uniform',
                 bias=0.),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
        ])
        if pos_order not in _POS_ORDERS:
            fix = " ('true' was renamed 'original')" \
                if pos_order == 'true' else ''
            raise ValueError(f'UMMAEPretrainDecoder: pos_order must be one of '
                             f'{_POS_ORDERS}, got {pos_order!r}{fix}.')
        p = mask_patch_size
        input_hw = to_2tuple(input_size)
        if input_hw[0] % (2 * p) or input_hw[1] % (2 * p):
            raise ValueError(
                size_rule(input_hw, 2 * p, 'UMMAEPretrainDecoder: '
                          f'input_size={input_size}: UM-MAE') + '.')
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.upscale = upscale
        self.mask_patch_size = p
        self.pos_order = pos_order
        self.grid = (input_hw[0] // p, input_hw[1] // p)
        self.decoder_embed = nn.Linear(in_channels, upscale**2 * embed_dims)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.decoder_pos_embed = nn.Parameter(
            sincos_2d_colfirst(*self.grid, embed_dims)[None],
            requires_grad=False)
        self.decoder_blocks = ModuleList([
            TransformerEncoderLayer(
                embed_dims,
                num_heads,
                int(mlp_ratio * embed_dims),
                qkv_bias=True,
                norm_cfg=norm_cfg) for _ in range(depth)
        ])
        self.decoder_norm = build_norm_layer(norm_cfg, embed_dims)[1]
        self.decoder_pred = nn.Linear(embed_dims, p**2 * img_channels)

    def init_weights(self) -> None:
        """``init_cfg`` (default: Xavier-uniform linears, unit LayerNorms,
        as MAE), the sin-cos table and a truncated-normal mask token."""
        super().init_weights()
        pos = sincos_2d_colfirst(*self.grid, self.embed_dims)
        self.decoder_pos_embed.data.copy_(pos[None])
        trunc_normal_(self.mask_token, std=.02)

    def _expand(self, x: Tensor, compact_hw: Tuple[int, int]) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, gh/2 * gw/2, D)`` tokens, block order.

        ``h * r`` may exceed ``gh/2`` by less than ``r`` when the encoder
        zero-padded an odd map (e.g. 224 px: 7 kept patches a side, a 4x4
        last map); the extra tokens, which cover the padding, are cropped.
        """
        r = self.upscale
        h, w = x.shape[2:]
        ch, cw = compact_hw
        if not (ch <= h * r < ch + r and cw <= w * r < cw + r):
            raise ValueError(
                f'UMMAEPretrainDecoder: the encoder map is {h}x{w}, '
                f'{h * r}x{w * r} tokens after upscale={r}, but the mask '
                f'keeps {ch}x{cw} patches; set upscale to the encoder\'s '
                f'last-stage stride / mask-patch size (2 for Swin/PVT).')
        x = self.decoder_embed(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if r > 1:
            x = F.pixel_shuffle(x, r)
        return x[:, :, :ch, :cw].flatten(2).transpose(1, 2)

    def visible_position_ids(self, kept_ids: Tensor) -> Tensor:
        """Patch ids whose embeddings the visible tokens receive."""
        if self.pos_order == 'reference':
            return torch.sort(kept_ids, dim=1).values
        return kept_ids

    def forward(self,
                x: Tensor,
                mask: Tensor,
                kept_ids: Optional[Tensor] = None) -> Tensor:
        """Predict every patch.

        Args:
            x (Tensor): Encoder's last map ``(B, C, h, w)`` on the compact
                grid.
            mask (Tensor): The US mask ``(B, gh, gw)``, True = removed.
            kept_ids (Tensor, optional): ``kept_patch_ids(mask)``, the kept
                patches in block order, when the caller already has them.
                Defaults to None (computed here).

        Returns:
            Tensor: ``(B, gh*gw, p**2 * img_channels)`` predictions in
            raster order of the full mask grid.
        """
        b, gh, gw = mask.shape
        if (gh, gw) != self.grid:
            p = self.mask_patch_size
            raise ValueError(
                f'UMMAEPretrainDecoder: the mask grid is {gh}x{gw} but the '
                f'decoder was built for input_size={self.grid[0] * p}x'
                f'{self.grid[1] * p} ({self.grid[0]}x{self.grid[1]}); set '
                f'input_size to the image size.')
        vis = self._expand(x, (gh // 2, gw // 2))
        kept = kept_patch_ids(mask, 'UMMAEPretrainDecoder', check=False) \
            if kept_ids is None else kept_ids
        # US removes three patches of every 2x2 block: a static count
        removed = masked_patch_ids(mask, gh * gw - (gh // 2) * (gw // 2))
        pos = self.decoder_pos_embed.expand(b, -1, -1).to(vis.dtype)
        dim = self.embed_dims

        def take(ids: Tensor) -> Tensor:
            return torch.gather(pos, 1, ids[..., None].expand(-1, -1, dim))

        vis = vis + take(self.visible_position_ids(kept))
        masked = self.mask_token.to(vis.dtype) + take(removed)
        tokens = torch.cat([vis, masked], dim=1)
        for blk in self.decoder_blocks:
            tokens = blk(tokens)
        pred = self.decoder_pred(self.decoder_norm(tokens))
        order = torch.cat([kept, removed], dim=1)
        out = torch.empty_like(pred)
        out.scatter_(1, order[..., None].expand_as(pred), pred)
        return out
