"""Save tiny UM-MAE models, one fixed batch and their losses.

Run from the root of an mmumae 0.1 checkout made before the argument
rename (``UMMAEViT``, decoder ``patch_size``/``in_chans``, ``pos_order``):

    PYTHONPATH=. python make_pre_rename_checkpoint.py OUT.pth

Every model is built from a shipped config at a tiny size (the overrides
below, in that version's argument names). Weights are rounded to float16
and the input batch to float16 before the loss is computed, and stored in
float16 (index buffers in int16): exact when loaded back into the float32
and int64 tensors of the model, and the file stays small.
"""
import sys

import numpy as np
import torch
from mmengine.config import Config

import mmumae  # noqa: F401
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.registry import MODELS

SIZE = 64
PYRAMID_NECK = {'model.neck.in_channels': 32, 'model.neck.embed_dims': 8,
                'model.neck.depth': 1, 'model.neck.num_heads': 1,
                'model.neck.input_size': SIZE}
TINY_ARCH = dict(_delete_=True, embed_dims=4, depths=[1, 1, 1, 1],
                 num_heads=[1, 1, 1, 2])
MODELS_TO_SAVE = {
    'swin': ('configs/ummae/ummae_swin-mini_demo.py', {
        'model.backbone.arch': TINY_ARCH, **PYRAMID_NECK}),
    'stock_swin': ('configs/ummae/ummae_stock-swin-mini_demo.py', {
        'model.backbone.arch': TINY_ARCH, 'model.backbone.img_size': SIZE,
        # bias tables just large enough for the compact windows used
        'model.backbone.stage_cfgs': [
            dict(block_cfgs=dict(window_size=w)) for w in (16, 8, 4, 2)],
        **PYRAMID_NECK}),
    'pvt': ('configs/ummae/ummae_pvt-mini_demo.py', {
        'model.backbone.arch': dict(
            _delete_=True, embed_dims=[4, 8, 16, 32], depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 2], mlp_ratios=[2, 2, 2, 2]),
        **PYRAMID_NECK}),
    'vit': ('configs/ummae/'
            'ummae_vit-base-p16_8xb512-amp-coslr-200e_in1k-224px.py', {
                'model.backbone.arch': dict(
                    _delete_=True, embed_dims=8, num_layers=1, num_heads=1,
                    feedforward_channels=16),
                'model.backbone.img_size': SIZE,
                **PYRAMID_NECK, 'model.neck.in_channels': 8}),
}


def _small(value: torch.Tensor) -> torch.Tensor:
    """Float16 weights (already rounded), int16 indices (they fit)."""
    if value.is_floating_point():
        return value.half()
    if value.dtype == torch.int64 and value.abs().max() < 2**15:
        return value.to(torch.int16)
    return value


def main(out: str) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    inputs = torch.randn(2, 3, SIZE, SIZE).half().float()
    gen = UniformMaskGenerator(input_size=SIZE)
    masks = [gen.generate() for _ in range(2)]
    mask = torch.as_tensor(np.stack([m for m, _ in masks]))
    sm_mask = torch.as_tensor(np.stack([s for _, s in masks]))
    saved = dict(inputs=inputs.half(), mask=mask, sm_mask=sm_mask, models={})
    for name, (config, options) in MODELS_TO_SAVE.items():
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(options)
        torch.manual_seed(1)
        model = MODELS.build(cfg.model)
        model.init_weights()
        model.eval()
        state = model.state_dict()
        with torch.no_grad():
            for value in state.values():
                if value.is_floating_point():
                    value.copy_(value.half().float())
            loss = model.masked_loss(inputs, mask, sm_mask)
        saved['models'][name] = dict(
            config=config, options=options, loss=loss,
            state_dict={k: _small(v) for k, v in state.items()})
        print(name, sum(v.numel() for v in state.values()), float(loss))
    torch.save(saved, out)


if __name__ == '__main__':
    main(sys.argv[1])
