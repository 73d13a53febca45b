"""Plain ViT fed uniform masks, for the ViT-versus-pyramid comparison."""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.mae import MAEViT
from torch import Tensor

from mmumae.registry import register_backbone
from ..utils import register_renamed_type
from .base import CompactInput, UMEncoderMixin


@register_backbone
class UMVisionTransformer(UMEncoderMixin, MAEViT):
    """mmpretrain's ``MAEViT`` driven by a uniform mask instead of its own.

    Without masks it is the plain ``VisionTransformer``. With ``mask`` and
    ``sm_mask`` (from :class:`UniformMaskGenerator`, mask patch = ViT
    patch), the compact image of the kept patches is patch-embedded,
    secondary-masked tokens are replaced by a learnable mask token, each
    token gets the fixed sin-cos embedding of its original position, and
    they are encoded with the class token. The output is the kept tokens
    as a ``(B, C, gh/2, gw/2)`` map, which :class:`UMMAEPretrainDecoder`
    reads with ``upscale=1``.

    Args:
        arch (str | dict): As ``MAEViT``. Defaults to ``'b'``.
        img_size (int): Input size (the position embedding's). Defaults
            to 224.
        patch_size (int): Patch size, which is also the mask patch size.
            Defaults to 16.
        init_cfg (dict | list, optional): Initialisation config. Defaults
            to None (:attr:`default_init_cfg`: Xavier-uniform linears and
            unit LayerNorms, as mmpretrain's MAE config), then ``MAEViT``'s
            position and patch embeddings.
        **kwargs: Every other ``MAEViT`` option (``out_indices``,
            ``drop_path_rate``, ``norm_cfg``, ``final_norm``, ...) except
            ``mask_ratio`` (the mask comes from the data).
    """
    default_init_cfg: List[dict] = [
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ]

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 **kwargs) -> None:
        if 'mask_ratio' in kwargs:
            raise TypeError('UMVisionTransformer: unexpected argument '
                            "'mask_ratio': the uniform mask from the data "
                            'sets it (0.75); delete it.')
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size,
                         init_cfg=init_cfg or self.default_init_cfg, **kwargs)
        self._setup_um(patch_size, patch_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    @property
    def out_stride(self) -> int:
        """One token per kept patch: the patch size."""
        return self.patch_size

    @property
    def out_channels(self) -> int:
        """The embedding width."""
        return self.embed_dims

    def _forward_full(self, x: Tensor,
                      mask: Optional[Tensor]) -> Tuple[Tensor, ...]:
        """Dense mode: ``VisionTransformer.forward``."""
        return MAEViT.forward(self, x, mask=None)

    def _forward_um(self, c: CompactInput) -> Tuple[Tensor, ...]:
        if c.full_hw != tuple(self.patch_resolution):
            raise ValueError(
                f'UMVisionTransformer: images of {c.full_hw[0]}x'
                f'{c.full_hw[1]} patches but the position embedding is for '
                f'{self.patch_resolution[0]}x{self.patch_resolution[1]}; '
                f'set img_size to the image size.')
        b, _, h, w = c.image.shape
        tokens = self.patch_embed(c.image)[0]
        tokens = torch.where(c.sm_tokens.flatten(1)[..., None],
                             self.mask_token.to(tokens.dtype), tokens)
        idx = c.coords[..., 0] * c.full_hw[1] + c.coords[..., 1]
        tokens = tokens + self.pos_embed[0, 1:][idx.flatten(1)]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.norm1(tokens)[:, 1:]
        p = self.patch_size
        return (tokens.transpose(1, 2).reshape(b, -1, h // p, w // p), )


register_renamed_type('UMMAEViT', 'UMVisionTransformer')
