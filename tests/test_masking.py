"""Uniform masking and random masking generators."""
import numpy as np
import pytest

import mmumae  # noqa: F401
from mmumae.datasets.transforms import (RandomPatchMaskGenerator,
                                        UniformMaskGenerator)
from mmumae.registry import TRANSFORMS


def _blocks(mask: np.ndarray) -> np.ndarray:
    gh, gw = mask.shape
    return mask.reshape(gh // 2, 2, gw // 2, 2).transpose(0, 2, 1, 3).reshape(
        -1, 4)


def test_one_kept_patch_per_block_and_balanced_counts():
    gen = TRANSFORMS.build(dict(type='UniformMaskGenerator'))
    np.random.seed(0)
    for _ in range(20):
        mask, sm = gen.generate()
        assert mask.shape == (16, 16) and mask.dtype == bool
        kept = ~_blocks(mask)
        assert (kept.sum(1) == 1).all()
        assert mask.mean() == 0.75
        # balanced: each in-block position kept 16 times over the image
        assert np.bincount(kept.argmax(1), minlength=4).tolist() == [16] * 4


def test_independent_choice_is_not_always_balanced():
    gen = UniformMaskGenerator(balanced=False)
    np.random.seed(1)
    counts = []
    for _ in range(10):
        mask, _ = gen.generate()
        kept = ~_blocks(mask)
        assert (kept.sum(1) == 1).all()
        counts.append(np.bincount(kept.argmax(1), minlength=4).tolist())
    assert any(c != [16] * 4 for c in counts)


@pytest.mark.parametrize('ratio,expected', [(0.25, 16), (0.5, 32), (0., 0)])
def test_secondary_masking_hides_kept_patches_only(ratio, expected):
    gen = UniformMaskGenerator(sm_ratio=ratio)
    mask, sm = gen.generate()
    assert sm.sum() == expected == int(64 * ratio)
    assert not (sm & mask).any()  # SM patches are kept by US


def test_masks_differ_across_samples_and_reach_results():
    gen = UniformMaskGenerator(input_size=64)
    img = np.zeros((64, 64, 3), np.uint8)
    results = [gen(dict(img=img)) for _ in range(8)]
    masks = {r['mask'].numpy().tobytes() for r in results}
    sms = {r['sm_mask'].numpy().tobytes() for r in results}
    assert len(masks) > 1 and len(sms) > 1
    assert results[0]['mask'].shape == (4, 4)


def test_uniform_mask_errors_are_clear():
    with pytest.raises(ValueError, match='2x2 blocks of 16-px'):
        UniformMaskGenerator(input_size=240)  # 15x15 grid: no 2x2 split
    with pytest.raises(TypeError, match="'mask_ratio': Uniform Sampling "
                       'keeps one patch of every 2x2 block'):
        UniformMaskGenerator(mask_ratio=0.6)
    # mmumae 0.1 configs passed its only value: refused too, naming the fix
    with pytest.raises(TypeError, match="'mask_ratio'.*delete it"):
        UniformMaskGenerator(mask_ratio=0.75)
    assert UniformMaskGenerator().mask_ratio == 0.75
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match='sm_ratio'):
            UniformMaskGenerator(sm_ratio=bad)
    gen = UniformMaskGenerator(input_size=256)
    with pytest.raises(ValueError, match='image is 224x224'):
        gen(dict(img=np.zeros((224, 224, 3), np.uint8)))


def test_random_patch_mask_generator():
    gen = RandomPatchMaskGenerator(input_size=256, mask_patch_size=16,
                                   mask_ratio=0.75)
    m1 = gen(dict(img=np.zeros((256, 256, 3), np.uint8)))['mask'].numpy()
    m2 = gen.generate()
    assert m1.shape == (16, 16) and m1.sum() == 192 == m2.sum()
    assert (m1 != m2).any()
    # random masks are generally not uniform: some block keeps != 1 patch
    assert not all((~_blocks(gen.generate())).sum(1).tolist() == [1] * 64
                   for _ in range(5))
    with pytest.raises(ValueError, match='multiple of 16'):
        RandomPatchMaskGenerator(input_size=250)
    with pytest.raises(ValueError, match='mask_ratio'):
        RandomPatchMaskGenerator(mask_ratio=1.0)
