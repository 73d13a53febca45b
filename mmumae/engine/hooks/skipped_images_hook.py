"""Per-epoch report of the images a run skipped."""
from typing import List

from mmengine.hooks import Hook

from mmumae.registry import HOOKS


def _loaders_of(dataset) -> List:
    """The ``SafeLoadImageFromFile`` steps of a (wrapped) data set."""
    from mmumae.datasets import SafeLoadImageFromFile
    inner = getattr(dataset, 'datasets', None)
    if inner is not None:
        return [t for d in inner for t in _loaders_of(d)]
    if hasattr(dataset, 'dataset'):
        return _loaders_of(dataset.dataset)
    steps = getattr(getattr(dataset, 'pipeline', None), 'transforms', [])
    return [t for t in steps if isinstance(t, SafeLoadImageFromFile)]


@HOOKS.register_module()
class SkippedImagesHook(Hook):
    """Log how many unreadable images were skipped in each training epoch
    (``skip_bad_images=True``; see ``SafeLoadImageFromFile``), and in all
    at the end of training."""
    priority = 'LOW'

    def __init__(self) -> None:
        self._reported = 0

    def _total(self, runner) -> int:
        return sum(t.num_skipped
                   for t in _loaders_of(runner.train_dataloader.dataset))

    def after_train_epoch(self, runner) -> None:
        """Report the images skipped in this epoch."""
        total = self._total(runner)
        skipped = total - self._reported
        log = runner.logger.warning if skipped else runner.logger.info
        log(f'Epoch {runner.epoch + 1}: skipped {skipped} unreadable images '
            f'({total} in this run so far).')
        self._reported = total

    def after_train(self, runner) -> None:
        """Report the images skipped in the whole run."""
        runner.logger.info(
            f'Skipped {self._total(runner)} unreadable images in this run.')
