"""Stop a run whose loss or weights stop being finite."""
from typing import Optional

import torch
from mmengine.hooks import Hook

from mmumae.registry import HOOKS
from mmumae.utils import RunError

__all__ = ['FiniteLossHook']

_FIX = ('Lower the learning rate (optim_wrapper.optimizer.lr) or clip '
        'gradients (optim_wrapper.clip_grad=dict(max_norm=...)), then '
        '--resume from the last checkpoint.')


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop at the first non-finite loss, before it is saved.

    * fp32: the first iteration whose loss (any ``loss*`` output) is NaN
      or infinite stops the run with a :class:`~mmumae.utils.RunError`
      naming the iteration (``tools/train.py`` exits with status 1).
    * Mixed precision (``AmpOptimWrapper``): the loss scaler skips steps
      whose gradients overflow, which is normal now and then; the run
      stops after ``max_skipped_steps`` consecutive skipped steps.
    * A checkpoint whose weights hold a NaN or infinity is never written,
      so the rotation of ``max_keep_ckpts`` never deletes the last finite
      checkpoint for it (the deletion waits for a complete save, see
      ``AtomicLocalBackend``).

    Runs before ``LoggerHook`` and ``CheckpointHook``.

    Args:
        max_skipped_steps (int): Consecutive steps skipped by fp16 loss
            scaling that stop the run. Defaults to 100.
    """
    priority = 'NORMAL'

    def __init__(self, max_skipped_steps: int = 100) -> None:
        self.max_skipped_steps = max_skipped_steps
        self._skipped = 0
        self._scale: Optional[float] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Check this iteration's losses (and loss scale)."""
        bad = {
            k: float(torch.as_tensor(v).float().mean())
            for k, v in (outputs or {}).items() if 'loss' in k
            and not bool(torch.isfinite(torch.as_tensor(v)).all())
        }
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        if scaler is None:
            if bad:
                raise RunError(f'non-finite loss at {where}: {bad}; stopped '
                               'before saving it. ' + _FIX)
            return
        scale = float(scaler.get_scale())
        skipped = bool(bad) or (self._scale is not None
                                and scale < self._scale)
        self._skipped = self._skipped + 1 if skipped else 0
        self._scale = scale
        if self._skipped >= self.max_skipped_steps:
            raise RunError(
                f'fp16 loss scaling skipped {self._skipped} consecutive steps '
                f'up to {where} (loss scale now {scale:g}): the gradients '
                'keep overflowing. ' + _FIX)

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
