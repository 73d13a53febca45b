"""Input sizes: the rule, the sizes it accepts, and errors that name fixes."""
import pytest
import torch
from test_ummae import _samples

import mmumae  # noqa: F401
from mmumae.datasets.transforms import (RandomPatchMaskGenerator,
                                        UniformMaskGenerator)
from mmumae.models.backbones import UMPVT, UMSwinTransformer
from mmumae.registry import MODELS

TINY_SWIN = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4])
TINY_PVT = dict(embed_dims=[16, 32, 32, 64], depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])
BACKBONES = {
    'swin': (dict(type='UMSwinTransformer', arch=TINY_SWIN, window_size=8),
             128),
    'pvt': (dict(type='UMPVT', arch=TINY_PVT, sr_ratios=(4, 2, 1, 1)), 64),
}


def _ummae(family, size, out_indices=(3, ), **neck):
    backbone, channels = BACKBONES[family]
    backbone = dict(backbone, out_indices=out_indices)
    head = dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                loss=dict(type='PixelReconstructionLoss', criterion='L2'))
    head.update(neck.pop('head', {}))
    neck = dict(dict(type='UMMAEPretrainDecoder', in_channels=channels,
                     embed_dims=32, depth=1, num_heads=2, input_size=size),
                **neck)
    return MODELS.build(
        dict(type='UMMAE', backbone=backbone, neck=neck, head=head))


@pytest.mark.parametrize('family', ['swin', 'pvt'])
@pytest.mark.parametrize('size', [224, 160])
def test_sizes_whose_compact_maps_are_odd_train(family, size):
    """224 px: 7 kept patches a side; the encoder pads 7 -> 8 before its
    last stage and the decoder crops the extra tokens."""
    torch.manual_seed(0)
    model = _ummae(family, size, out_indices=(2, 3))
    model.init_weights()
    samples = _samples(2, size)
    mask = torch.stack([s.mask for s in samples])
    sm = torch.stack([s.sm_mask for s in samples])
    x = torch.randn(2, 3, size, size)
    maps = model.backbone(x, mask, sm)
    kept = size // 32
    assert maps[0].shape[-2:] == (kept, kept)  # one token per kept patch
    assert maps[1].shape[-2:] == (-(-kept // 2), -(-kept // 2))
    pred = model.neck(maps[1], mask)
    assert pred.shape == (2, (size // 16)**2, 768)
    loss = model.loss(x, samples)['loss']
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.mask_token.grad.abs().sum() > 0


def test_generator_names_the_nearest_valid_sizes():
    for size in (224, 160, 96, (224, 160)):
        UniformMaskGenerator(input_size=size)  # accepted
    with pytest.raises(ValueError, match='multiple of 32 px; 240x240 is not: '
                       'use 224 or 256'):
        UniformMaskGenerator(input_size=240)
    with pytest.raises(ValueError, match='use 256 or 288'):
        UniformMaskGenerator(input_size=270)
    with pytest.raises(ValueError, match='multiple of 16 px.*use 240 or 256'):
        RandomPatchMaskGenerator(input_size=250)
    with pytest.raises(TypeError, match='positive int'):
        UniformMaskGenerator(input_size=(224, 224, 3))


@pytest.mark.parametrize('cls,arch', [(UMSwinTransformer, TINY_SWIN),
                                      (UMPVT, TINY_PVT)])
def test_backbone_refuses_a_grid_without_2x2_blocks(cls, arch):
    model = cls(arch=arch)
    grid = torch.zeros(1, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match='multiple of 32 px; 48x48 is not: '
                       'use 32 or 64'):
        model(torch.randn(1, 3, 48, 48), grid, grid)


@pytest.mark.parametrize('window', [0, -4])
def test_window_size_must_be_positive(window):
    with pytest.raises(ValueError, match=f'window_size={window} must be a '
                       'positive int; use 8 for pre-training'):
        UMSwinTransformer(arch=TINY_SWIN, window_size=window)


def test_parts_that_disagree_are_refused_at_construction():
    with pytest.raises(ValueError, match='set model.head.mask_patch_size=16'):
        _ummae('swin', 64, head=dict(patch_size=8))
    with pytest.raises(ValueError, match='with upscale=2, not 1; set '
                       'model.neck.upscale=2'):
        _ummae('pvt', 64, upscale=1)
    with pytest.raises(ValueError, match='128 channels but the decoder takes '
                       '96; set model.neck.in_channels=128'):
        _ummae('swin', 64, in_channels=96)
    with pytest.raises(ValueError, match='set model.neck.mask_patch_size=16'):
        _ummae('swin', 64, mask_patch_size=8, upscale=4,
               head=dict(patch_size=8))
    with pytest.raises(ValueError, match='stride .4 px. is not a multiple'):
        _ummae('swin', 64, out_indices=(0, ))
    with pytest.raises(TypeError, match='not a UM encoder'):
        MODELS.build(dict(
            type='UMMAE', backbone=dict(type='ResNet', depth=18),
            neck=dict(type='UMMAEPretrainDecoder'),
            head=dict(type='MAEPretrainHead', loss=dict(
                type='PixelReconstructionLoss', criterion='L2'))))
    with pytest.raises(ValueError, match='multiple of 32 px; 240x240 is not'):
        _ummae('swin', 240)
