"""mmengine's Runner with resume that falls back, and lr scaling that
counts gradient accumulation."""
from typing import Optional

from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmumae.utils import (RunError, check_batches, read_checkpoint,
                          resume_candidates)

__all__ = ['SafeRunner', 'newest_loadable_checkpoint']


def newest_loadable_checkpoint(work_dir: str, logger) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that reads, or None.

    Candidates come from :func:`mmumae.utils.resume_candidates`; a damaged
    or missing newer one is named in a warning and skipped.

    Raises:
        RunError: When there are checkpoints but none reads.
    """
    problems = []
    for path in resume_candidates(work_dir):
        try:
            read_checkpoint(path)
        except RunError as err:
            problems.append(str(err))
            continue
        if problems:
            logger.warning(
                f'resume: the newest checkpoint could not be loaded '
                f'({"; ".join(problems)}); resuming from {path}, the newest '
                'loadable one.')
        return path
    if problems:
        raise RunError(
            f'resume: no loadable checkpoint in {work_dir}; tried: '
            f'{"; ".join(problems)}. Give --resume CKPT, or start afresh '
            '(no --resume, with --overwrite).')
    logger.info(f'resume: no checkpoint in {work_dir}; starting afresh.')
    return None


@RUNNERS.register_module()
class SafeRunner(Runner):
    """mmengine's ``Runner`` with three public methods changed.

    * :meth:`load_or_resume`: ``resume=True`` without ``load_from`` resumes
      from :func:`newest_loadable_checkpoint` (``last_checkpoint`` may name
      the file relative to the work dir, see ``WorkDirHook``).
    * :meth:`build_train_loop`: a training set without a single batch is
      refused before the first iteration.
    * :meth:`scale_lr`: ``auto_scale_lr`` counts gradient accumulation in
      the total batch (mmengine's leaves it out).

    The checks of weights, work dir, losses and resume are hooks of the
    shared runtime (``StrictLoadHook``, ``WorkDirHook``,
    ``FiniteLossHook``, ``ExactResumeHook``). Selected with
    ``runner_type='SafeRunner'``.
    """

    def load_or_resume(self) -> None:
        """Resume from the newest loadable checkpoint, or as mmengine."""
        if self.cfg.get('resume') and not self.cfg.get('load_from'):
            path = newest_loadable_checkpoint(self.work_dir, self.logger)
            if path is not None:
                self.cfg.load_from = path  # for the hooks' messages
                self.resume(path)
            return None
        return super().load_or_resume()

    def build_train_loop(self, loop):
        """Build the loop, refusing a training set without a batch."""
        loop = super().build_train_loop(loop)
        loader = loop.dataloader
        check_batches(
            len(loader.dataset), loader.batch_size, self.world_size,
            bool(getattr(loader, 'drop_last', False)),
            num_batches=len(loader))
        return loop

    def scale_lr(self,
                 optim_wrapper: OptimWrapper,
                 auto_scale_lr: Optional[dict] = None) -> None:
        """Scale the lr by total batch / ``base_batch_size``, where the
        total batch is processes x batch size x ``accumulative_counts``."""
        if not auto_scale_lr or not auto_scale_lr.get('enable', False):
            return None
        if 'base_batch_size' not in auto_scale_lr:
            raise RunError('auto_scale_lr needs base_batch_size: the total '
                           'batch the learning rate was set for.')
        cfg = self.cfg.get('optim_wrapper') or {}
        subs = [cfg] if 'type' in cfg or 'optimizer' in cfg else [
            v for v in cfg.values() if isinstance(v, dict)]
        accum = {sub.get('accumulative_counts', 1) for sub in subs} or {1}
        if len(accum) != 1:
            raise RunError('auto_scale_lr: the optimizer wrappers accumulate '
                           f'over different counts {sorted(accum)}.')
        batch = self.train_dataloader.batch_size
        accum = accum.pop()
        total = self.world_size * batch * accum
        base = auto_scale_lr['base_batch_size']
        ratio = total / base
        self.logger.info(
            f'auto_scale_lr: total batch {total} = {self.world_size} '
            f'processes x {batch} x {accum} accumulated steps, for a base of '
            f'{base}: the lr is scaled by {ratio:g}.')
        wrappers = list(optim_wrapper.values()) if isinstance(
            optim_wrapper, OptimWrapperDict) else [optim_wrapper]
        for wrapper in wrappers:
            for group in wrapper.optimizer.param_groups:
                group['lr'] = group['lr'] * ratio
