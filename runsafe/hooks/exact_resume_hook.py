"""Make a resumed epoch-based run repeat the uninterrupted one."""
import random

import numpy as np
import torch
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import EpochBasedTrainLoop
from mmengine.registry import HOOKS

from ..errors import RunError

__all__ = ['ExactResumeHook']


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
      state from epoch to epoch).
    * An epoch-based loop with a checkpoint hook saving by iteration is
      refused before the first iteration, and so is resuming a checkpoint
      saved in the middle of an epoch: mmengine would repeat that whole
      epoch (more iterations than planned, a shifted schedule).
    """
    priority = 'LOWEST'  # seed after every other before_train_epoch

    def before_train(self, runner) -> None:
        """Refuse iteration checkpoints in an epoch-based loop."""
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            return
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch:
                raise RunError(
                    'default_hooks.checkpoint saves by iteration '
                    '(by_epoch=False) in an epoch-based loop: such '
                    'checkpoints fall inside an epoch, and resuming one '
                    'repeats the whole epoch. Save by epoch (by_epoch=True) '
                    'or train with IterBasedTrainLoop.')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to resume in the middle of an epoch."""
        meta = checkpoint.get('meta', {})
        if not runner.cfg.get('resume') or 'iter' not in meta or \
                not isinstance(runner.train_loop, EpochBasedTrainLoop):
            return
        per_epoch = len(runner.train_dataloader)
        if meta['iter'] != meta.get('epoch', 0) * per_epoch:
            raise RunError(
                f'resume: {runner.cfg.get("load_from")} was saved at '
                f'iteration {meta["iter"]}, inside epoch '
                f'{meta["iter"] // per_epoch + 1} ({per_epoch} iterations per '
                'epoch); an epoch-based loop would repeat that epoch. Resume '
                'from an epoch_N.pth checkpoint.')

    def before_train_epoch(self, runner) -> None:
        """Seed the global random generators from the seed and epoch."""
        if runner.seed is None:
            return
        seeds = np.random.SeedSequence([runner.seed, runner.epoch])
        py_seed, torch_seed = (int(s) for s in seeds.generate_state(2))
        random.seed(py_seed)
        np.random.seed(py_seed)
        torch.manual_seed(torch_seed)
