"""The UM-MAE algorithm: backbone -> decoder -> head, masks from the data."""
from typing import Dict, List, Tuple

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample
from torch import Tensor

from mmumae.registry import MODELS


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
    decoder and head (mmpretrain's ``MAEPretrainHead`` with ``norm_pix``:
    MSE on the US-removed patches only).
    """

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Dense features, as for fine-tuning."""
        return self.backbone(inputs)

    def _masks(self, inputs: Tensor,
               data_samples: List[DataSample]) -> Tuple[Tensor, Tensor]:
        mask = stack_sample_field(data_samples, 'mask', inputs.device)
        sm_mask = stack_sample_field(data_samples, 'sm_mask', inputs.device)
        return mask, sm_mask

    def _predict_patches(self, inputs: Tensor, mask: Tensor,
                         sm_mask: Tensor) -> Tensor:
        feats = self.backbone(inputs, mask, sm_mask)
        return self.neck(feats[-1], mask)

    def loss(self, inputs: Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, Tensor]:
        """Reconstruction loss on the patches removed by uniform sampling.

        Args:
            inputs (Tensor): Normalised images ``(B, C, H, W)``.
            data_samples (List[DataSample]): Carry ``mask`` and ``sm_mask``.

        Returns:
            dict: ``{'loss': Tensor}``.
        """
        mask, sm_mask = self._masks(inputs, data_samples)
        pred = self._predict_patches(inputs, mask, sm_mask)
        loss = self.head.loss(pred, inputs, mask.flatten(1).to(pred.dtype))
        return dict(loss=loss)

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

        def pixels(m: Tensor) -> Tensor:
            m = m.repeat_interleave(p, 1).repeat_interleave(p, 2)
            return m[:, None].to(inputs.dtype)

        us = pixels(mask)
        sm = pixels(sm_mask)
        recon = head.unpatchify(pred).to(inputs.dtype)
        return dict(
            original=inputs,
            us_masked=inputs * (1 - us),
            encoder_input=inputs * (1 - us) * (1 - sm),
            reconstruction=inputs * (1 - us) + recon * us,
            mask=us,
            sm_mask=sm)
