"""The UM-MAE algorithm: backbone -> decoder -> head, masks from the data."""
from typing import Dict, List, Optional, Tuple

import torch
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample
from torch import Tensor

from mmumae.registry import MODELS
from ..backbones import UMMAEViT
from ..backbones.base import UMBackbone
from ..heads import UMMAEPretrainHead
from ..utils import check_patch_mask, check_uniform_mask, kept_patch_ids


def stack_sample_field(data_samples: List[DataSample], key: str,
                       device: torch.device) -> Tensor:
    """Stack a per-sample mask packed by ``PackInputs(algorithm_keys=...)``."""
    if not data_samples or key not in data_samples[0]:
        raise KeyError(
            f'The data samples carry no {key!r}. Add the mask generator to '
            f'the pipeline and pack it with '
            f'PackInputs(algorithm_keys=[{key!r}, ...]).')
    return torch.stack([
        torch.as_tensor(getattr(ds, key), device=device) for ds in data_samples
    ]).bool()


def encoder_geometry(backbone) -> Optional[Tuple[int, int, int]]:
    """``(mask_patch_size, stride, channels)`` of the map UM mode returns
    (the last out index), or None for an unknown backbone."""
    if isinstance(backbone, UMBackbone):
        last = max(backbone.out_indices)
        return (backbone.mask_patch_size,
                backbone.patch_size * 2**last, backbone.num_features[last])
    if isinstance(backbone, UMMAEViT):
        patch = backbone.patch_embed.projection.kernel_size[0]
        return patch, patch, backbone.embed_dims
    return None


@MODELS.register_module()
class UMMAE(BaseSelfSupervisor):
    """UM-MAE: Uniform Masking MAE for pyramid vision transformers.

    Implementation of `Uniform Masking: Enabling MAE Pre-training for
    Pyramid-based Vision Transformers with Locality
    <https://arxiv.org/abs/2205.10063>`_. Everything UM-specific lives in
    the mask generator (:class:`UniformMaskGenerator`) and the backbone; this
    class reads the two masks from the data samples and chains backbone,
    decoder and head (:class:`UMMAEPretrainHead`, mmpretrain's
    ``MAEPretrainHead`` for any H x W, with ``norm_pix``: MSE on the
    US-removed patches only). :meth:`masked_loss` is the same loss from
    mask tensors, for ``torch.compile(fullgraph=True)``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._check_parts()
        #: set once the first batch's mask was checked (see :meth:`loss`)
        self.mask_checked = False

    def _check_parts(self) -> None:
        """Refuse backbone/decoder/head sizes that disagree, before any
        step: patch sizes, the decoder's upscale and input channels."""
        neck, head = self.neck, self.head
        p = getattr(neck, 'patch_size', None)
        if p is None:
            return
        hp = getattr(head, 'patch_size', p)
        if hp != p:
            raise ValueError(
                f'UMMAE: the head compares {hp}-px patches but the decoder '
                f'predicts {p}-px patches; set head patch_size={p} (the mask '
                f'patch size).')
        grid = getattr(neck, 'grid', None)
        if grid is not None and grid[0] != grid[1] and \
                type(head).patchify is MAEPretrainHead.patchify:
            raise ValueError(
                f'UMMAE: input_size {grid[0] * p}x{grid[1] * p} is not square '
                f'and mmpretrain\'s MAEPretrainHead patchifies square images '
                f'only; use head type=\'UMMAEPretrainHead\' (same loss).')
        geo = encoder_geometry(self.backbone)
        if geo is None:
            return
        mask_patch, stride, channels = geo
        if mask_patch != p:
            raise ValueError(
                f'UMMAE: the backbone uses {mask_patch}-px mask patches but '
                f'the decoder {p}-px ones; set neck patch_size={mask_patch}.')
        if neck.upscale * p != stride:
            raise ValueError(
                f'UMMAE: the encoder output has a {stride}-px stride on the '
                f'compact image, so the decoder needs upscale={stride // p} '
                f'for {p}-px patches; got upscale={neck.upscale}.')
        if neck.in_channels != channels:
            raise ValueError(
                f'UMMAE: the encoder output has {channels} channels; set '
                f'neck in_channels={channels} (got {neck.in_channels}).')

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Dense features, as for fine-tuning."""
        return self.backbone(inputs)

    def _masks(self, inputs: Tensor,
               data_samples: List[DataSample]) -> Tuple[Tensor, Tensor]:
        """Stacked ``mask``, ``sm_mask``; the mask is checked once."""
        mask = stack_sample_field(data_samples, 'mask', inputs.device)
        sm_mask = stack_sample_field(data_samples, 'sm_mask', inputs.device)
        if not self.mask_checked and not torch.compiler.is_compiling():
            check_patch_mask(mask, inputs.shape[-2:], type(self).__name__)
            check_uniform_mask(mask, type(self).__name__)
            self.mask_checked = True
        return mask, sm_mask

    def _predict_patches(self, inputs: Tensor, mask: Tensor,
                         sm_mask: Tensor) -> Tensor:
        """Backbone -> decoder; the block order of the kept patches is
        computed once here and handed to both (the mask was checked by
        :meth:`_masks`)."""
        kept = kept_patch_ids(mask, type(self).__name__, check=False)
        feats = self.backbone(inputs, mask, sm_mask, kept_ids=kept)
        return self.neck(feats[-1], mask, kept_ids=kept)

    def masked_loss(self, inputs: Tensor, mask: Tensor,
                    sm_mask: Tensor) -> Tensor:
        """The loss of :meth:`loss` from mask tensors.

        Tensors in, a scalar out, and no read of a tensor's values (shapes
        depend on the input size only), so ``torch.compile(fullgraph=True)``
        captures it, forward and backward, as one graph. The masks are not
        checked here (see :meth:`loss`).

        Args:
            inputs (Tensor): Normalised images ``(B, C, H, W)``.
            mask (Tensor): ``(B, H/p, W/p)`` bool uniform mask.
            sm_mask (Tensor): ``(B, H/p, W/p)`` bool secondary mask.

        Returns:
            Tensor: The scalar loss.
        """
        pred = self._predict_patches(inputs, mask, sm_mask)
        return self.head.loss(pred, inputs, mask.flatten(1).to(pred.dtype))

    def loss(self, inputs: Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, Tensor]:
        """Reconstruction loss on the patches removed by uniform sampling.

        The first call (outside ``torch.compile``) checks that the mask
        keeps one patch of every 2x2 block: that reads the mask's values,
        a host-device sync on a GPU, so it is done once, not every step.

        Args:
            inputs (Tensor): Normalised images ``(B, C, H, W)``.
            data_samples (List[DataSample]): Carry ``mask`` and ``sm_mask``.

        Returns:
            dict: ``{'loss': Tensor}``.
        """
        mask, sm_mask = self._masks(inputs, data_samples)
        return dict(loss=self.masked_loss(inputs, mask, sm_mask))

    @torch.no_grad()
    def reconstruct(self, inputs: Tensor,
                    data_samples: List[DataSample]) -> Dict[str, Tensor]:
        """Images for a reconstruction figure, in the normalised input space.

        Returns:
            dict: ``original``, ``us_masked`` (US-removed patches blank),
            ``encoder_input`` (also SM patches blank: what the encoder
            sees), ``reconstruction`` (predictions on removed patches, with
            ``norm_pix`` undone using each patch's own statistics as in the
            MAE demo, pasted over the visible patches); each
            ``(B, C, H, W)``; ``mask`` and ``sm_mask`` as pixel masks
            ``(B, 1, H, W)``.
        """
        mask, sm_mask = self._masks(inputs, data_samples)
        pred = self._predict_patches(inputs, mask, sm_mask).float()
        head = self.head
        target = head.patchify(inputs.float())
        if getattr(head, 'norm_pix', False):
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            pred = pred * (var + 1.e-6)**.5 + mean
        p = inputs.shape[-1] // mask.shape[-1]
        grid = tuple(mask.shape[-2:])

        def pixels(m: Tensor) -> Tensor:
            m = m.repeat_interleave(p, 1).repeat_interleave(p, 2)
            return m[:, None].to(inputs.dtype)

        us = pixels(mask)
        sm = pixels(sm_mask)
        recon = (head.unpatchify(pred, grid) if isinstance(
            head, UMMAEPretrainHead) else head.unpatchify(pred)).to(
                inputs.dtype)
        return dict(
            original=inputs,
            us_masked=inputs * (1 - us),
            encoder_input=inputs * (1 - us) * (1 - sm),
            reconstruction=inputs * (1 - us) + recon * us,
            mask=us,
            sm_mask=sm)
