"""Make a resumed epoch-based run repeat the uninterrupted one."""
import random
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from ..errors import RunError

__all__ = ['ExactResumeHook', 'RECORD_KEY']

# The key of the record this hook adds to a checkpoint's ``meta``.
RECORD_KEY = 'exact_resume'


def _is_epoch_loop(runner) -> bool:
    return isinstance(runner.train_loop, EpochBasedTrainLoop)


def _saved_per_epoch(checkpoint: dict) -> Optional[int]:
    """Iterations per epoch of the run that saved a checkpoint without this
    hook's record, from its message hub (mmengine's ``RuntimeInfoHook``
    records ``max_iters`` and ``max_epochs``)."""
    info = (checkpoint.get('message_hub') or {}).get('runtime_info') or {}
    iters, epochs = info.get('max_iters'), info.get('max_epochs')
    if isinstance(iters, int) and isinstance(epochs, int) and epochs > 0:
        return iters // epochs
    return None


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Exact resume of epoch-based training.

    * Before each training epoch, Python's, numpy's and torch's global
      random generators are seeded from ``(runner.seed, epoch)``. Data
      augmentation, masks and dropout of an epoch then depend only on the
      seed and the epoch, so a run resumed from ``epoch_N.pth`` draws what
      the uninterrupted run drew (mmengine restores the weights, optimizer,
      schedulers, seed and sampler order). Exact with ``num_workers=0`` or
      ``persistent_workers=False`` (persistent workers carry their random
      state from epoch to epoch; a warning says so at the start).
    * Each checkpoint records in ``meta['exact_resume']`` whether it was
      saved at the end of an epoch (``epoch_end``), how many iterations it
      had done into the epoch, the iterations per epoch, the number of
      processes and the batch size.
    * Resuming a checkpoint saved at the end of an epoch always works; when
      the number of iterations per epoch, of processes or the batch size
      differ (another number of GPUs, another batch size), a warning says
      that the run continues but does not repeat the uninterrupted one.
      Resuming a checkpoint saved in the middle of an epoch is refused:
      mmengine would repeat that whole epoch (more iterations than planned,
      a shifted schedule). A checkpoint without the record (saved without
      this hook) counts as saved at an epoch end when its iteration is its
      epoch times the iterations per epoch of the run that saved it.
    * An epoch-based loop with a checkpoint hook saving by iteration is
      refused before the first iteration.
    """
    priority = 'LOWEST'  # seed after every other before_train_epoch

    def __init__(self) -> None:
        # (epoch, iter) a checkpoint saved at the end of the latest finished
        # epoch has in its meta
        self._epoch_end: Optional[Tuple[int, int]] = None
        self._done = 0  # iterations done in the current epoch

    def before_train(self, runner) -> None:
        """Refuse iteration checkpoints in an epoch-based loop; warn about
        persistent workers."""
        if not _is_epoch_loop(runner):
            return
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch:
                raise RunError(
                    'default_hooks.checkpoint saves by iteration '
                    '(by_epoch=False) in an epoch-based loop: such '
                    'checkpoints fall inside an epoch, and resuming one '
                    'repeats the whole epoch. Save by epoch (by_epoch=True) '
                    'or train with IterBasedTrainLoop.')
        # a fresh run, or one resumed from an epoch end, starts at one
        self._epoch_end = (runner.epoch, runner.iter)
        loader = runner.train_dataloader
        if getattr(loader, 'persistent_workers', False) and getattr(
                loader, 'num_workers', 0) > 0:
            runner.logger.warning(
                'train_dataloader.persistent_workers=True (with '
                f'{loader.num_workers} workers): the workers keep their '
                'random state from epoch to epoch, so a resumed run will '
                'not repeat the losses of an uninterrupted one. Set '
                'train_dataloader.persistent_workers=False for exact '
                'resume.')

    def before_train_epoch(self, runner) -> None:
        """Seed the global random generators from the seed and epoch."""
        self._done = 0
        if runner.seed is None:
            return
        seeds = np.random.SeedSequence([runner.seed, runner.epoch])
        py_seed, torch_seed = (int(s) for s in seeds.generate_state(2))
        random.seed(py_seed)
        np.random.seed(py_seed)
        torch.manual_seed(torch_seed)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        """Count the iterations of this epoch (for the record)."""
        self._done = batch_idx + 1

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """After the last batch of an epoch, note where its end is (the
        checkpoint hook saves that epoch afterwards)."""
        if _is_epoch_loop(runner) and \
                batch_idx + 1 == len(runner.train_dataloader):
            # mmengine counts the epoch and the iteration after the hooks
            self._epoch_end = (runner.epoch + 1, runner.iter + 1)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record in the checkpoint's meta whether it ends an epoch."""
        if not _is_epoch_loop(runner):
            return
        meta = checkpoint.setdefault('meta', {})
        loader = runner.train_dataloader
        at_end = (meta.get('epoch'), meta.get('iter')) == self._epoch_end
        meta[RECORD_KEY] = dict(
            epoch_end=at_end,
            iters_into_epoch=0 if at_end else self._done,
            iters_per_epoch=len(loader),
            world_size=runner.world_size,
            batch_size=loader.batch_size)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to resume in the middle of an epoch; warn when the run
        differs from the one that saved the checkpoint."""
        meta = checkpoint.get('meta') or {}
        if not runner.cfg.get('resume') or 'iter' not in meta or \
                not _is_epoch_loop(runner):
            return
        name = runner.cfg.get('load_from') or 'the checkpoint'
        epoch, step = meta.get('epoch', 0), meta['iter']
        loader = runner.train_dataloader
        ours = dict(iters_per_epoch=len(loader), world_size=runner.world_size,
                    batch_size=loader.batch_size)
        record = meta.get(RECORD_KEY)
        if isinstance(record, dict) and 'epoch_end' in record:
            if not record['epoch_end']:
                raise RunError(
                    f'resume: {name} was saved inside epoch {epoch + 1}, '
                    f'after {record.get("iters_into_epoch", "?")} of its '
                    f'{record.get("iters_per_epoch", "?")} iterations '
                    f'(iteration {step}); an epoch-based loop would repeat '
                    'that whole epoch. Resume from a checkpoint saved at the '
                    'end of an epoch (epoch_N.pth).')
            theirs = {k: record.get(k) for k in ours}
        else:
            per_epoch = _saved_per_epoch(checkpoint) or ours[
                'iters_per_epoch']
            if step != epoch * per_epoch:
                raise RunError(
                    f'resume: {name} was saved at iteration {step}, inside '
                    f'epoch {step // per_epoch + 1} ({per_epoch} iterations '
                    'per epoch in the run that saved it, which recorded '
                    'no epoch end); an epoch-based loop would repeat that '
                    'epoch. Resume from an epoch_N.pth checkpoint.')
            theirs = dict(iters_per_epoch=per_epoch)
        changed = [f'{k.replace("_", " ")} {theirs[k]} -> {ours[k]}'
                   for k in theirs if theirs[k] != ours[k]]
        if changed:
            runner.logger.warning(
                f'resume: {name} was saved at the end of epoch {epoch} by a '
                f'run with other settings ({", ".join(changed)}): training '
                f'continues with epoch {epoch + 1}, but does not repeat the '
                'uninterrupted run exactly (other batches, another '
                'iteration count).')
