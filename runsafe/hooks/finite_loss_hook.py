"""Stop a run whose loss or weights stop being finite."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..checkpoint import read_checkpoint, resume_candidates
from ..errors import RunError

__all__ = ['FiniteLossHook']

# --resume would restore the saved lr with the optimizer and schedulers
_FIX = ('Lower the learning rate (optim_wrapper.optimizer.lr) or clip '
        'gradients (optim_wrapper.clip_grad=dict(max_norm=...)) and start '
        'afresh (--overwrite), or let the run go back to its last '
        'checkpoint at a lower lr itself '
        '(--cfg-options default_hooks.finite_loss.rollbacks=2).')
# the rollbacks lowered the lr that the later checkpoints saved
_FIX_AFTER_ROLLBACKS = (
    'The rollbacks are used up; the checkpoints saved since carry the lr '
    'they lowered: --resume with more rollbacks (--cfg-options '
    'default_hooks.finite_loss.rollbacks=2) continues from the newest, or '
    'lower the learning rate and start afresh (--overwrite).')


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop at the first non-finite loss, before it is saved.

    * fp32: the first iteration whose loss (any ``loss*`` output) is NaN
      or infinite stops the run with a :class:`~runsafe.RunError`
      naming the iteration (``tools/train.py`` exits with status 1).
    * Mixed precision (``AmpOptimWrapper``): the loss scaler skips steps
      whose gradients overflow, which is normal now and then; the run
      stops after ``max_skipped_steps`` consecutive skipped steps.
    * A checkpoint whose weights hold a NaN or infinity is never written,
      so the rotation of ``max_keep_ckpts`` never deletes the last finite
      checkpoint for it (the deletion waits for a complete save, see
      ``AtomicLocalBackend``).

    * Opt-in rollback (``rollbacks=N``): instead of stopping, up to N times
      the run goes back to the newest loadable checkpoint of its work dir
      (``runner.resume``: weights, optimizer, schedulers, iteration) and
      continues with every lr multiplied by ``rollback_lr_factor``, with a
      warning. The data loader is not rewound: the run continues on the
      next batches (in an epoch-based loop, the rest of the epoch's
      batches count towards the restored epoch).

    Runs before ``LoggerHook`` and ``CheckpointHook``.

    Args:
        max_skipped_steps (int): Consecutive steps skipped by fp16 loss
            scaling that stop the run. Defaults to 100.
        rollbacks (int): How many times to roll back instead of stopping.
            Defaults to 0 (stop).
        rollback_lr_factor (float): The lr factor of each rollback.
            Defaults to 0.5.
    """
    priority = 'NORMAL'

    def __init__(self,
                 max_skipped_steps: int = 100,
                 rollbacks: int = 0,
                 rollback_lr_factor: float = 0.5) -> None:
        if not 0 < rollback_lr_factor <= 1:
            raise RunError('FiniteLossHook: rollback_lr_factor must be in '
                           f'(0, 1], got {rollback_lr_factor}.')
        self.max_skipped_steps = max_skipped_steps
        self.rollbacks = rollbacks
        self.rollback_lr_factor = rollback_lr_factor
        self._skipped = 0
        self._scale: Optional[float] = None
        self._rolled_back = False

    def _stop_or_roll_back(self, runner, message: str) -> None:
        for path in resume_candidates(runner.work_dir) \
                if self.rollbacks > 0 else []:
            try:
                read_checkpoint(path)
                break
            except RunError:
                continue
        else:
            used_up = self._rolled_back and self.rollbacks == 0
            raise RunError(message + ' ' + (
                _FIX_AFTER_ROLLBACKS if used_up else _FIX))
        self.rollbacks -= 1
        self._rolled_back = True
        self._skipped, self._scale = 0, None
        runner.resume(path)
        factor = self.rollback_lr_factor
        wrapper = runner.optim_wrapper
        for group in wrapper.optimizer.param_groups:
            group['lr'] *= factor
            if 'initial_lr' in group:
                group['initial_lr'] *= factor
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for subs in schedulers.values() for s in subs]
        for scheduler in schedulers:
            if getattr(scheduler, 'param_name', None) == 'lr':
                scheduler.base_values = [
                    v * factor for v in scheduler.base_values]
        runner.logger.warning(
            f'{message} Rolled back to {path} (iteration {runner.iter}); '
            f'lr x{factor:g}, {self.rollbacks} rollback(s) left.')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Check this iteration's losses (and loss scale)."""
        bad = {
            k: float(torch.as_tensor(v).detach().float().mean())
            for k, v in (outputs or {}).items() if 'loss' in k
            and not bool(torch.isfinite(torch.as_tensor(v)).all())
        }
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'
        if self.rollbacks > 0 and not bad and not bool(torch.stack([
                torch.isfinite(p).all()
                for p in runner.model.parameters()]).all()):  # one sync
            bad = {'weights': float('nan')}  # roll back before saving them
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        if scaler is None:
            if bad:
                self._stop_or_roll_back(
                    runner, f'non-finite loss at {where}: {bad}; stopped '
                    'before saving it.')
            return
        scale = float(scaler.get_scale())
        skipped = bool(bad) or (self._scale is not None
                                and scale < self._scale)
        self._skipped = self._skipped + 1 if skipped else 0
        self._scale = scale
        if self._skipped >= self.max_skipped_steps:
            self._stop_or_roll_back(
                runner, f'fp16 loss scaling skipped {self._skipped} '
                f'consecutive steps up to {where} (loss scale now '
                f'{scale:g}): the gradients keep overflowing.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write a checkpoint with non-finite weights."""
        bad = [
            k for k, v in checkpoint.get('state_dict', {}).items()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())
        ]
        if bad:
            step = checkpoint.get('meta', {}).get('iter', runner.iter)
            raise RunError(
                f'non-finite weights after iteration {step} ({len(bad)} '
                f'tensors, e.g. {", ".join(bad[:3])}): not saving them; the '
                'earlier checkpoints are kept. ' + _FIX)
