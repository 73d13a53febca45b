"""MAE's pixel head for images of any (H, W), square or not."""
from typing import Optional, Tuple

import torch
from mmpretrain.models.heads import MAEPretrainHead
from torch import Tensor

from mmumae.registry import MODELS
from ..utils import refuse_unknown_args


@MODELS.register_module()
class UMMAEPretrainHead(MAEPretrainHead):
    """mmpretrain's ``MAEPretrainHead`` for non-square images too.

    The same target (per-patch pixels, normalised per patch with
    ``norm_pix``) and loss; only :meth:`patchify` and :meth:`unpatchify`
    take an ``(H, W)`` image (mmpretrain's assume ``H == W``). For square
    images the result is identical.

    Args:
        loss (dict): Config of the pixel loss.
        norm_pix (bool): Normalise each target patch by its mean and
            variance. Defaults to False.
        mask_patch_size (int): Pixel size of a predicted patch (the mask
            patch). Defaults to 16.
        img_channels (int): Image channels. Defaults to 3.
        **kwargs: Refused; an old name (``patch_size``, ``in_channels``)
            with its new one.
    """

    def __init__(self,
                 loss: dict,
                 norm_pix: bool = False,
                 mask_patch_size: int = 16,
                 img_channels: int = 3,
                 **kwargs) -> None:
        refuse_unknown_args(
            'UMMAEPretrainHead', kwargs,
            dict(patch_size="renamed to 'mask_patch_size'",
                 in_channels="renamed to 'img_channels'"))
        super().__init__(loss, norm_pix, mask_patch_size, img_channels)

    @property
    def mask_patch_size(self) -> int:
        """Pixel size of a predicted patch: ``MAEPretrainHead``'s
        ``patch_size``, which :class:`UMMAE` checks."""
        return self.patch_size

    def patchify(self, imgs: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, H/p * W/p, p**2 * C)``, raster order."""
        p = self.mask_patch_size
        b, c, h, w = imgs.shape
        if h % p or w % p or c != self.in_channels:
            raise ValueError(
                f'{type(self).__name__}: {c}-channel {h}x{w} images do not '
                f'split into {p}-px patches of {self.in_channels} channels; '
                f'use a size that is a multiple of {p} (mask_patch_size).')
        x = imgs.reshape(b, c, h // p, p, w // p, p)
        x = torch.einsum('nchpwq->nhwpqc', x)
        return x.reshape(b, (h // p) * (w // p), p**2 * c)

    def unpatchify(self,
                   x: Tensor,
                   grid: Optional[Tuple[int, int]] = None) -> Tensor:
        """``(B, gh * gw, p**2 * C)`` -> ``(B, C, gh * p, gw * p)``.

        Args:
            x (Tensor): Patches in raster order.
            grid (tuple, optional): ``(gh, gw)`` patch grid. Defaults to
                None (a square grid).
        """
        p, c = self.mask_patch_size, self.in_channels
        if grid is None:
            side = int(round(x.shape[1]**.5))
            grid = (side, side)
        gh, gw = grid
        if gh * gw != x.shape[1]:
            raise ValueError(
                f'{type(self).__name__}: {x.shape[1]} patches do not fill '
                f'a {gh}x{gw} grid; pass grid=(H/p, W/p).')
        x = x.reshape(x.shape[0], gh, gw, p, p, c)
        x = torch.einsum('nhwpqc->nchpwq', x)
        return x.reshape(x.shape[0], c, gh * p, gw * p)
