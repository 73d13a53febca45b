"""Save a UM-MAE reconstruction figure during and after training."""
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from mmumae.registry import HOOKS
from mmumae.visualization import reconstruct_batch, save_reconstruction_figure


@HOOKS.register_module()
class ReconstructionFigureHook(Hook):
    """Write ``original | US-masked | encoder input | reconstruction``.

    Uses the first batch of the training dataloader (its masks come from the
    pipeline) and the model's ``reconstruct`` method. A runner whose model
    has no ``reconstruct`` (a stand-in model, as in mmpretrain's
    ``tools/visualization/vis_scheduler.py``, which builds a runner with the
    config's ``custom_hooks`` around a model that does nothing) gets one
    warning and no figure; training is not affected.

    Args:
        interval (int, optional): Also save every ``interval`` epochs as
            ``reconstruction_epoch_<n>.png`` (iterations and
            ``reconstruction_iter_<n>.png`` for iteration-based loops).
            None saves only after training. Defaults to None.
        num_samples (int): Rows of the figure. Defaults to 4.
        out_name (str): File name in the work dir for the final figure.
            Defaults to ``'reconstruction.png'``.
    """
    priority = 'LOW'

    def __init__(self,
                 interval: Optional[int] = None,
                 num_samples: int = 4,
                 out_name: str = 'reconstruction.png') -> None:
        self.interval = interval
        self.num_samples = num_samples
        self.out_name = out_name
        self._batch = None
        self._warned = False

    def _save(self, runner, name: str) -> Optional[str]:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not callable(getattr(model, 'reconstruct', None)):
            if not self._warned:
                runner.logger.warning(
                    f'ReconstructionFigureHook: {type(model).__name__} has '
                    'no reconstruct() method (not a UM-MAE/MAE/SimMIM '
                    'model), so no reconstruction figure is written.')
                self._warned = True
            return None
        if self._batch is None:
            self._batch = next(iter(runner.train_dataloader))
        results = reconstruct_batch(model, self._batch)
        pre = model.data_preprocessor
        out = osp.join(runner.work_dir, name)
        save_reconstruction_figure(
            results, pre.mean, pre.std, out, self.num_samples,
            title=f'{type(model).__name__} at iteration {runner.iter}')
        runner.logger.info(f'reconstruction figure saved to {out}')
        return out

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if (self.interval and is_main_process()
                and not isinstance(runner.train_loop, EpochBasedTrainLoop)
                and self.every_n_train_iters(runner, self.interval)):
            self._save(runner, f'reconstruction_iter_{runner.iter + 1}.png')

    def after_train_epoch(self, runner) -> None:
        if (self.interval and is_main_process()
                and self.every_n_epochs(runner, self.interval)):
            self._save(runner, f'reconstruction_epoch_{runner.epoch}.png')

    def after_train(self, runner) -> None:
        if is_main_process():
            self._save(runner, self.out_name)
