"""Plain ViT fed uniform masks, for the ViT-versus-pyramid comparison."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.selfsup.mae import MAEViT
from torch import Tensor

from mmumae.registry import register_backbone
from ..utils import check_patch_mask, kept_patch_ids


@register_backbone
class UMMAEViT(MAEViT):
    """mmpretrain's ``MAEViT`` driven by a uniform mask instead of its own.

    Without masks it is the plain ``VisionTransformer``. With ``mask`` and
    ``sm_mask`` (from :class:`UniformMaskGenerator`, mask patch = ViT patch),
    secondary-masked tokens are replaced by a learnable mask token, the
    fixed sin-cos position embedding is added, the kept tokens are gathered
    in block order and encoded with the class token. The output is the kept
    tokens as a ``(B, C, gh/2, gw/2)`` map, which
    :class:`UMMAEPretrainDecoder` reads with ``upscale=1``. All other
    arguments are those of ``MAEViT`` (``mask_ratio`` is unused: the mask
    comes from the data).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        """MAEViT's initialisation plus the mask token."""
        super().init_weights()
        trunc_normal_(self.mask_token, std=.02)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None,
                sm_mask: Optional[Tensor] = None,
                kept_ids: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Encode the uniformly sampled tokens (or the full image).

        Args:
            x (Tensor): ``(B, C, H, W)`` images.
            mask (Tensor, optional): ``(B, H/16, W/16)`` US mask.
            sm_mask (Tensor, optional): ``(B, H/16, W/16)`` SM mask.
            kept_ids (Tensor, optional): ``kept_patch_ids(mask)`` when the
                caller already has them. Defaults to None.

        Returns:
            tuple[Tensor]: ``(B, C, H/32, W/32)`` kept tokens (UM mode) or
            the ViT outputs (dense mode).
        """
        if mask is None:
            return super().forward(x, mask=None)
        if sm_mask is None:
            raise ValueError('UMMAEViT: pass both mask and sm_mask (from '
                             'UniformMaskGenerator); for random sampling use '
                             "mmpretrain's MAE with MAEViT.")
        p = check_patch_mask(mask, x.shape[-2:], 'UMMAEViT')
        patch = self.patch_embed.projection.kernel_size[0]
        if p != patch:
            raise ValueError(f'UMMAEViT: the mask uses {p}-px patches but the '
                             f'ViT patch size is {patch}; set the mask '
                             f'generator mask_patch_size={patch}.')
        if tuple(x.shape[-2:]) != tuple(self.patch_resolution[i] * patch
                                        for i in range(2)):
            raise ValueError(
                f'UMMAEViT: images are {x.shape[-2]}x{x.shape[-1]} but the '
                f'position embedding is for img_size '
                f'{self.patch_resolution[0] * patch}; set img_size.')
        b = x.shape[0]
        gh, gw = mask.shape[-2:]
        tokens = self.patch_embed(x)[0]
        sm = sm_mask.flatten(1).bool()
        tokens = torch.where(sm[..., None], self.mask_token.to(tokens.dtype),
                             tokens)
        tokens = tokens + self.pos_embed[:, 1:]
        ids = kept_patch_ids(mask, 'UMMAEViT') if kept_ids is None \
            else kept_ids
        tokens = torch.gather(
            tokens, 1, ids[..., None].expand(-1, -1, tokens.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.norm1(tokens)[:, 1:]
        return (tokens.transpose(1, 2).reshape(b, -1, gh // 2, gw // 2), )
