"""Image loading that names the file it cannot read."""
import os.path as osp
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine.logging import MMLogger
from mmengine.registry import TRANSFORMS

from .errors import RunError

__all__ = ['SafeLoadImageFromFile', 'CheckSegMap']


def _why_unreadable(path: str) -> str:
    if not osp.exists(path):
        return 'no such file'
    if osp.getsize(path) == 0:
        return '0 bytes (an empty file)'
    return 'not a decodable image (corrupt, truncated or another format)'


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` whose errors name the file.

    mmcv's transform answers a 0-byte file with OpenCV's ``!buf.empty()``
    and a corrupt one with a bare assertion, naming no file. Here every
    unreadable image raises a :class:`~runsafe.RunError` with the file
    and the reason. With ``ignore_empty=True`` (mmcv's option, which here
    also covers undecodable files) it logs a warning naming the file and
    returns None instead; mmengine's dataset then draws another image in
    training and refuses the None in test mode, so nothing is skipped in
    validation or testing.

    Args:
        **kwargs: Arguments of mmcv's ``LoadImageFromFile``.
    """

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']``; see the class description. A
        sample that already holds its image and no path (an inferencer's
        input array) passes unchanged."""
        if 'img_path' not in results and 'img' in results:
            return results
        path = results['img_path']
        try:
            loaded = super().transform(results)
        except Exception:  # cv2.error, AssertionError, OSError ...
            loaded = None
        if loaded is not None:
            return loaded
        reason = _why_unreadable(path)
        if not self.ignore_empty:
            raise RunError(
                f'cannot read image {path}: {reason}. Remove or replace it, '
                'or skip unreadable training images with ignore_empty=True '
                'on the loader (--cfg-options train_dataloader.dataset.'
                'pipeline.0.ignore_empty=True).')
        MMLogger.get_current_instance().warning(
            f'skipped unreadable image {path}: {reason}')
        return None


@TRANSFORMS.register_module()
class CheckSegMap(BaseTransform):
    """Refuse a segmentation label map that does not fit its image.

    Placed after mmseg's ``LoadAnnotations`` in the segmentation dataset
    configs: a label map of another size than
    its image, or holding a label outside ``[0, num_classes)`` other than
    ``ignore_index``, raises a :class:`~runsafe.RunError` naming the
    file, before the sample reaches a batch.

    Args:
        num_classes (int): Classes of the decode head.
        ignore_index (int): The label that marks ignored pixels.
            Defaults to 255.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        """Check ``results['gt_seg_map']`` against the image; a sample
        without a label map (inference) passes unchanged."""
        if 'gt_seg_map' not in results:
            return results
        seg, path = results['gt_seg_map'], results.get('seg_map_path')
        size = tuple(results.get('ori_shape', seg.shape))
        if tuple(seg.shape[:2]) != size:
            raise RunError(
                f'label map {path} is {seg.shape[1]}x{seg.shape[0]} but its '
                f'image {results.get("img_path")} is {size[1]}x{size[0]}; '
                'regenerate the label map at the size of its image.')
        labels = np.unique(seg)
        bad = labels[(labels >= self.num_classes)
                     & (labels != self.ignore_index)]
        if bad.size:
            shift = 1 if results.get('reduce_zero_label') else 0
            raise RunError(
                f'label map {path} holds label {int(bad.max()) + shift} '
                f'(the model has {self.num_classes} classes, '
                f'{shift}..{self.num_classes - 1 + shift} in the file'
                f'{", 0 = ignored" if shift else ""}); fix the file or '
                'set num_classes of the decode head.')
        return results
