"""Image loading that names the file it cannot read."""
import copy
import multiprocessing
import os.path as osp
from multiprocessing.context import get_spawning_popen
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import MMLogger

from mmumae.registry import TRANSFORMS
from mmumae.utils import RunError


def _why_unreadable(path: str) -> str:
    if not osp.exists(path):
        return 'no such file'
    if osp.getsize(path) == 0:
        return '0 bytes (an empty file)'
    return 'not a decodable image (corrupt, truncated or another format)'


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` whose errors name the file, with an opt-in skip.

    mmcv's transform fails on a 0-byte file with OpenCV's ``!buf.empty()``,
    which names no file. Here every unreadable image raises a
    :class:`~mmumae.utils.RunError` naming the file and the reason, unless
    ``skip_bad_images=True``: then it logs a warning naming the file and
    returns None, and the data set (mmengine's ``BaseDataset``, in training
    mode) draws another image. :attr:`num_skipped` counts the skipped files
    across dataloader workers; ``SkippedImagesHook`` reports it per epoch.

    Args:
        skip_bad_images (bool): Skip unreadable images instead of stopping.
            Defaults to False.
        **kwargs: Arguments of ``LoadImageFromFile`` (``ignore_empty`` is
            replaced by ``skip_bad_images``).
    """

    def __init__(self, skip_bad_images: bool = False, **kwargs) -> None:
        kwargs.pop('ignore_empty', None)
        super().__init__(ignore_empty=False, **kwargs)
        self.skip_bad_images = skip_bad_images
        # Shared with forked or spawned dataloader workers.
        self._skipped = multiprocessing.Value('l', 0)

    @property
    def num_skipped(self) -> int:
        """Number of images skipped so far, in all workers."""
        return self._skipped.value

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']``; see the class description."""
        path = results['img_path']
        try:
            return super().transform(results)
        except Exception:  # cv2.error, AssertionError, OSError ...
            reason = _why_unreadable(path)
        if not self.skip_bad_images:
            raise RunError(
                f'cannot read image {path}: {reason}. Remove or replace it, '
                'or set skip_bad_images=True to skip unreadable images.')
        with self._skipped.get_lock():
            self._skipped.value += 1
            count = self._skipped.value
        # Numbered: mmengine's logger drops a warning repeated verbatim.
        MMLogger.get_current_instance().warning(
            f'skipped unreadable image {path}: {reason} (skip {count} of '
            'this run)')
        return None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if get_spawning_popen() is None:
            # Pickled outside of starting a worker (which shares the
            # counter): the copy counts on its own.
            state['_skipped'] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._skipped is None:
            self._skipped = multiprocessing.Value('l', 0)

    def __deepcopy__(self, memo: dict) -> 'SafeLoadImageFromFile':
        """A deep copy that shares the skip counter."""
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            setattr(new, key,
                    value if key == '_skipped' else copy.deepcopy(value, memo))
        return new

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f', skip_bad_images={self.skip_bad_images})')


__all__ = ['SafeLoadImageFromFile']
