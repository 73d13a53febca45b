"""Refuse a checkpoint that does not fit the model or the optimizer."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS

from ..checkpoint import mismatch_text, state_dict_mismatch, state_dict_of
from ..errors import RunError

__all__ = ['StrictLoadHook']


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Check every checkpoint the runner loads (``load_from``,
    ``tools/test.py``'s checkpoint, ``--resume``) before its weights enter
    the model.

    The keys are compared after the model's own ``load_state_dict``
    pre-hooks have adapted them (:func:`runsafe.state_dict_mismatch`),
    with a DDP ``module.`` prefix removed. A missing, unexpected or
    differently shaped tensor stops the run with the keys named, unless the
    config sets ``allow_partial_load=True``: then the fitting tensors load
    and a warning names the others. Resuming is always strict, and also
    checks that the saved optimizer state has this config's parameter
    groups.
    """
    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse, or warn about, a checkpoint that does not fit."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        name = runner.cfg.get('load_from') or 'the checkpoint'
        mismatch = state_dict_mismatch(model, state_dict_of(checkpoint))
        detail = mismatch_text(mismatch)
        if runner.cfg.get('resume'):
            if mismatch.count:
                raise RunError(
                    f'resume: {name} belongs to another model ({detail}). '
                    'Resume with the config that wrote it, or pick another '
                    '--work-dir for this config.')
            self._check_optimizer(runner, name, checkpoint)
        elif mismatch.count and not runner.cfg.get('allow_partial_load'):
            raise RunError(
                f'{name} does not fit the model ({mismatch.count} keys; '
                f'{detail}). Use a checkpoint of this model, or '
                '--allow-partial-load to load only the tensors that fit.')
        elif mismatch.count:
            runner.logger.warning(
                f'PARTIAL LOAD (allow_partial_load=True) of {name}: '
                f'{mismatch.count} keys do not fit and keep their initial '
                f'values: {detail}')

    @staticmethod
    def _check_optimizer(runner, name: str, checkpoint: dict) -> None:
        saved = checkpoint.get('optimizer', {}).get('param_groups')
        wrapper = runner.optim_wrapper
        if saved is None or isinstance(wrapper, OptimWrapperDict) or \
                not hasattr(wrapper, 'optimizer'):
            return
        ours = [len(g['params']) for g in wrapper.optimizer.param_groups]
        theirs = [len(g['params']) for g in saved]
        if ours != theirs:
            raise RunError(
                f'resume: the optimizer state in {name} does not fit this '
                f'config\'s optimizer (parameter group sizes {theirs} vs '
                f'{ours}); the checkpoint comes from another config.')
