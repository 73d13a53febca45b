"""Mask generators for UM-MAE and the SimMIM baseline.

Both work on the grid of *mask patches* (16 px by default) and write boolean
tensors of shape ``(H / mask_patch_size, W / mask_patch_size)`` into the
results dict, in raster order (tensors, so that ``PackInputs`` passes them on
as they are and the data preprocessor moves them to the device). ``True``
means "removed". The model turns them into token-level masks itself, so the
same mask works for any patch size that divides the mask-patch size.

Sizes: UM-MAE needs H and W to be multiples of ``2 * mask_patch_size``
(32 px by default: 2x2 blocks of mask patches), nothing more; the pyramid
encoders zero-pad compact maps that do not halve evenly (224 px: 7 kept
patches a side) and the decoder crops the padding, so every such size works.
"""
from typing import Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.utils import to_2tuple

from mmumae.registry import TRANSFORMS
from ...models.utils import refuse_unknown_args, size_rule

#: The only ratio Uniform Sampling can produce: one kept patch per 2x2 block.
US_MASK_RATIO = 0.75


def _to_2tuple(size: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    pair = to_2tuple(size)
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(s, int) and s > 0 for s in pair)):
        raise TypeError(
            f'{name} must be a positive int or an (H, W) pair, got {size!r}')
    return int(pair[0]), int(pair[1])


def _mask_grid(input_size: Tuple[int, int], mask_patch_size: int,
               block: int, owner: str) -> Tuple[int, int]:
    """Return the mask-patch grid, with a clear error if it does not fit."""
    if mask_patch_size <= 0:
        raise ValueError(f'{owner}: mask_patch_size must be positive, got '
                         f'{mask_patch_size}.')
    h, w = input_size
    unit = mask_patch_size * block
    if h % unit or w % unit:
        what = (f'UM-MAE ({block}x{block} blocks of {mask_patch_size}-px mask '
                f'patches)' if block > 1 else
                f'{mask_patch_size}-px mask patches')
        raise ValueError(
            size_rule((h, w), unit, f'{owner}: {what}') +
            ', or change mask_patch_size.')
    return h // mask_patch_size, w // mask_patch_size


def _check_image(results: dict, input_size: Tuple[int, int],
                 owner: str) -> None:
    img = results.get('img')
    if img is None or not hasattr(img, 'shape'):
        return
    if tuple(img.shape[:2]) != tuple(input_size):
        raise ValueError(
            f'{owner}: the image is {img.shape[0]}x{img.shape[1]} but the '
            f'mask grid was built for input_size='
            f'{input_size[0]}x{input_size[1]}; '
            f'resize/crop to that size before this transform (e.g. '
            f'RandomResizedCrop(scale={input_size[0]})) or set input_size.')


@TRANSFORMS.register_module()
class UniformMaskGenerator(BaseTransform):
    """Uniform Masking (UM) = Uniform Sampling + Secondary Masking.

    **Uniform Sampling (US).** The grid of mask patches is split into 2x2
    blocks and exactly one patch per block is kept, so 75% of the patches are
    removed and the kept ones form a regular grid of half the size (the
    "compact image" the pyramid encoder runs on). With ``balanced=True`` (the
    reference behaviour) each of the four in-block positions is kept equally
    often over the image (16 times each at 256 px), shuffled across blocks;
    with ``balanced=False`` each block draws its position independently.

    **Secondary Masking (SM).** Of the kept patches, ``int(num_kept *
    sm_ratio)`` are chosen at random; the encoder replaces their tokens by a
    learnable mask token while they stay in the compact grid.

    **Added Keys:**

    - ``mask`` (bool Tensor, ``(H/p, W/p)``): True where US removed
      the patch (the reconstruction targets).
    - ``sm_mask`` (bool Tensor, ``(H/p, W/p)``): True where a kept
      patch is secondary-masked. ``mask & sm_mask`` is always empty.

    Pack them with ``PackInputs(algorithm_keys=['mask', 'sm_mask'])``.

    The ratio removed by US is always :attr:`mask_ratio` (0.75), so it is
    not an argument.

    Args:
        input_size (int | tuple): Input image size (H, W). Must be a multiple
            of ``2 * mask_patch_size``. Defaults to 256.
        mask_patch_size (int): Size in pixels of a mask patch. Defaults to 16.
        sm_ratio (float): Ratio of the kept patches hidden by SM, in
            ``[0, 1)``; 0 disables SM. Defaults to 0.25.
        balanced (bool): Balance the kept in-block positions over the image
            (reference behaviour) instead of drawing each block
            independently. Defaults to True.
        **kwargs: Refused with a one-line error, ``mask_ratio`` of mmumae
            0.1 included (delete it).
    """
    #: The ratio removed by Uniform Sampling (one patch of 2x2 kept).
    mask_ratio = US_MASK_RATIO

    def __init__(self,
                 input_size: Union[int, Tuple[int, int]] = 256,
                 mask_patch_size: int = 16,
                 sm_ratio: float = 0.25,
                 balanced: bool = True,
                 **kwargs) -> None:
        owner = type(self).__name__
        refuse_unknown_args(owner, kwargs, dict(mask_ratio=(
            f'Uniform Sampling keeps one patch of every 2x2 block, so it '
            f'always removes {US_MASK_RATIO}: delete it (hide more with '
            'sm_ratio, or use RandomPatchMaskGenerator for other ratios)')))
        if not 0.0 <= float(sm_ratio) < 1.0:
            raise ValueError(
                f'{owner}: sm_ratio={sm_ratio} must lie in [0, 1): it is the '
                f'fraction of the kept patches replaced by the mask token '
                f'(0 disables secondary masking; the paper uses 0.25).')
        self.input_size = _to_2tuple(input_size, 'input_size')
        self.mask_patch_size = int(mask_patch_size)
        self.sm_ratio = float(sm_ratio)
        self.balanced = bool(balanced)
        self.grid = _mask_grid(self.input_size, self.mask_patch_size, 2, owner)
        self.num_blocks = (self.grid[0] // 2) * (self.grid[1] // 2)
        self.num_sm = int(self.num_blocks * self.sm_ratio)

    def _kept_offsets(self) -> np.ndarray:
        """In-block offset (0..3, raster inside the 2x2 block) per block."""
        if self.balanced:
            reps = -(-self.num_blocks // 4)  # ceil
            offsets = np.tile(np.arange(4), reps)[:self.num_blocks]
            return np.random.permutation(offsets)
        return np.random.randint(0, 4, size=self.num_blocks)

    def generate(self) -> Tuple[np.ndarray, np.ndarray]:
        """Draw one ``(mask, sm_mask)`` pair."""
        gh, gw = self.grid
        bh, bw = gh // 2, gw // 2
        offsets = self._kept_offsets().reshape(bh, bw)
        # blocks[i, j, a, b] is patch (2i + a, 2j + b)
        keep = np.zeros((bh, bw, 4), dtype=bool)
        np.put_along_axis(keep, offsets[..., None], True, axis=-1)
        keep = keep.reshape(bh, bw, 2, 2).transpose(0, 2, 1, 3)
        keep = keep.reshape(gh, gw)

        sm_mask = np.zeros((gh, gw), dtype=bool)
        if self.num_sm > 0:
            kept_idx = np.flatnonzero(keep)
            chosen = np.random.choice(kept_idx, self.num_sm, replace=False)
            sm_mask.flat[chosen] = True
        return ~keep, sm_mask

    def transform(self, results: dict) -> dict:
        """Add ``mask`` and ``sm_mask`` to ``results``."""
        _check_image(results, self.input_size, type(self).__name__)
        mask, sm_mask = self.generate()
        results['mask'] = torch.from_numpy(mask)
        results['sm_mask'] = torch.from_numpy(sm_mask)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(input_size={self.input_size}, '
                f'mask_patch_size={self.mask_patch_size}, '
                f'mask_ratio={self.mask_ratio}, sm_ratio={self.sm_ratio}, '
                f'balanced={self.balanced})')


@TRANSFORMS.register_module()
class RandomPatchMaskGenerator(BaseTransform):
    """Random masking of mask patches (SimMIM / MAE random-sampling baseline).

    ``round(num_patches * mask_ratio)`` patches of ``mask_patch_size`` pixels
    are chosen uniformly at random per sample.

    Not mmpretrain's ``SimMIMMaskGenerator``, which draws the same kind of
    mask but is not a drop-in here: it takes square sizes only, rounds the
    count up (``ceil``), and writes an int numpy array on the *token* grid
    (``model_patch_size``); our backbones read bool tensors on the mask-patch
    grid (as ``UniformMaskGenerator`` writes) and expand them to tokens
    themselves, so one mask serves any patch size.

    **Added Keys:**

    - ``mask`` (bool Tensor, ``(H/p, W/p)``): True where removed.

    Args:
        input_size (int | tuple): Input image size (H, W). Must be a multiple
            of ``mask_patch_size``. Defaults to 256.
        mask_patch_size (int): Size in pixels of a mask patch. Defaults to 16.
        mask_ratio (float): Ratio of removed patches, in ``(0, 1)``.
            Defaults to 0.75.
    """

    def __init__(self,
                 input_size: Union[int, Tuple[int, int]] = 256,
                 mask_patch_size: int = 16,
                 mask_ratio: float = 0.75) -> None:
        owner = type(self).__name__
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ValueError(f'{owner}: mask_ratio={mask_ratio} must lie in '
                             f'(0, 1).')
        self.input_size = _to_2tuple(input_size, 'input_size')
        self.mask_patch_size = int(mask_patch_size)
        self.mask_ratio = float(mask_ratio)
        self.grid = _mask_grid(self.input_size, self.mask_patch_size, 1, owner)
        self.num_patches = self.grid[0] * self.grid[1]
        self.num_masked = int(round(self.num_patches * self.mask_ratio))

    def generate(self) -> np.ndarray:
        """Draw one mask."""
        mask = np.zeros(self.num_patches, dtype=bool)
        mask[np.random.permutation(self.num_patches)[:self.num_masked]] = True
        return mask.reshape(self.grid)

    def transform(self, results: dict) -> dict:
        """Add ``mask`` to ``results``."""
        _check_image(results, self.input_size, type(self).__name__)
        results['mask'] = torch.from_numpy(self.generate())
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(input_size={self.input_size}, '
                f'mask_patch_size={self.mask_patch_size}, '
                f'mask_ratio={self.mask_ratio})')
