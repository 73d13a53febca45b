"""The UM-MAE algorithm: backbone -> decoder -> head, masks from the data."""
from typing import Dict, List, Tuple

import torch
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample
from torch import Tensor

from mmumae.registry import MODELS
from ..backbones import UMEncoderMixin
from ..heads import UMMAEPretrainHead
from ..necks import UMMAEPretrainDecoder
from ..utils import (check_patch_mask, check_uniform_mask, expand_patch_mask,
                     kept_patch_ids)


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
        """Refuse a backbone, decoder and head that disagree, at build, with
        one line naming the setting to change."""
        backbone, neck, head = self.backbone, self.neck, self.head
        if not (isinstance(backbone, UMEncoderMixin)
                and isinstance(neck, UMMAEPretrainDecoder)):
            raise TypeError(
                f'UMMAE: {type(backbone).__name__} + {type(neck).__name__} is '
                f'not a UM encoder + UMMAEPretrainDecoder; use UMSwin'
                f'Transformer, UMPVT, UMStockSwinTransformer or '
                f'UMVisionTransformer with UMMAEPretrainDecoder.')
        p, stride = backbone.mask_patch_size, backbone.out_stride
        grid = neck.grid
        checks = [
            (neck.mask_patch_size == p, f'the backbone uses {p}-px mask '
             f'patches but the decoder {neck.mask_patch_size}-px ones',
             f'model.neck.mask_patch_size={p}'),
            (head.patch_size == p, f'the head compares {head.patch_size}-px '
             f'patches but the mask patches are {p} px',
             f'model.head.mask_patch_size={p} (mmpretrain heads: '
             f'patch_size={p})'),
            (stride % p == 0, f'the backbone output stride ({stride} px) is '
             f'not a multiple of the {p}-px mask patch',
             'a later stage in model.backbone.out_indices'),
            (neck.upscale * p == stride, f'the backbone output has a '
             f'{stride}-px stride on the compact image, which the decoder '
             f'maps to {p}-px patches with upscale={stride // p}, not '
             f'{neck.upscale}', f'model.neck.upscale={stride // p}'),
            (neck.in_channels == backbone.out_channels, f'the backbone '
             f'output has {backbone.out_channels} channels but the decoder '
             f'takes {neck.in_channels}',
             f'model.neck.in_channels={backbone.out_channels}'),
            (grid[0] == grid[1]
             or type(head).patchify is not MAEPretrainHead.patchify,
             f'input_size {grid[0] * p}x{grid[1] * p} is not square and '
             f'mmpretrain\'s MAEPretrainHead patchifies square images only',
             "model.head.type='UMMAEPretrainHead' (same loss; patch_size "
             f'is mask_patch_size={p} there)'),
        ]
        for ok, problem, fix in checks:
            if not ok:
                raise ValueError(f'UMMAE: {problem}; set {fix}.')

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
            return expand_patch_mask(m, p)[:, None].to(inputs.dtype)

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
