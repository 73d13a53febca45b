"""mmengine's Runner with strict, clear-failing loading and data checks."""
import copy
import os
import os.path as osp
import time
from typing import Callable, List, Optional, Union

from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model
from torch.utils.data import DataLoader

from mmumae.utils import (RunError, check_batches, mismatch_text,
                          read_checkpoint, resume_candidates,
                          state_dict_mismatch, state_dict_of)
from mmumae.utils.checkpoint import CKPT_NAME, is_local_path

__all__ = ['SafeRunner', 'prepare_image_loading']

# Transform types replaced by SafeLoadImageFromFile (same arguments).
_STOCK_LOADERS = ('LoadImageFromFile', 'mmpretrain.LoadImageFromFile',
                  'mmcv.LoadImageFromFile')


def _pipelines(dataset: dict) -> List[list]:
    if not isinstance(dataset, dict):
        return []
    if 'datasets' in dataset:
        return [p for d in dataset['datasets'] for p in _pipelines(d)]
    if 'dataset' in dataset:
        return _pipelines(dataset['dataset'])
    return [dataset.get('pipeline') or []]


def prepare_image_loading(cfg) -> None:
    """Name the file in image-loading errors; skip unreadable training
    images when the config says ``skip_bad_images=True``.

    Every ``LoadImageFromFile`` of the train/val/test pipelines becomes a
    ``SafeLoadImageFromFile`` with the same arguments (in mmpretrain's
    scope; other scopes are left alone); with
    ``skip_bad_images`` the training one skips unreadable files and
    ``SkippedImagesHook`` reports how many at the end of each epoch.

    Args:
        cfg (Config): The full config, edited in place.
    """
    skip = bool(cfg.get('skip_bad_images', False))
    if cfg.get('default_scope', 'mmpretrain') != 'mmpretrain':
        return  # registered in mmpretrain's TRANSFORMS only
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not loader:
            continue
        for pipeline in _pipelines(loader.get('dataset')):
            for step in pipeline:
                if isinstance(step, dict) and step.get(
                        'type') in _STOCK_LOADERS:
                    step['type'] = 'SafeLoadImageFromFile'
                    if key == 'train_dataloader' and skip:
                        step['skip_bad_images'] = True
    hooks = list(cfg.get('custom_hooks') or [])
    if skip and not any(
            h.get('type') == 'SkippedImagesHook' for h in hooks):
        hooks.append(dict(type='SkippedImagesHook'))
        cfg.custom_hooks = hooks


@RUNNERS.register_module()
class SafeRunner(Runner):
    """mmengine's ``Runner``, strict where weights and data enter.

    * ``load_from`` (and ``tools/test.py``'s checkpoint) must fit the
      model: a missing, unexpected or differently shaped tensor stops the
      run with the keys named, unless the config sets
      ``allow_partial_load=True`` (then only the fitting tensors load and a
      warning names the others).
    * ``resume``: a checkpoint of another model is refused as such; with
      ``resume=True`` and no ``load_from`` the newest *loadable* checkpoint
      of the work dir is used (a damaged or missing newest one is named and
      skipped).
    * A file that is not a checkpoint is called so
      (:func:`mmumae.utils.read_checkpoint`).
    * Training in a work dir holding an earlier run's checkpoints without
      ``resume`` is refused unless ``overwrite=True``, which first moves
      them to ``previous_<time>/``.
    * ``auto_scale_lr`` counts gradient accumulation in the total batch.
    * An empty training set, or one smaller than a batch with
      ``drop_last``, is refused before the first iteration.

    Built like ``Runner`` (``runner_type='SafeRunner'`` or
    :meth:`from_cfg`); the extra config keys are ``allow_partial_load``,
    ``overwrite`` and ``skip_bad_images`` (all default False).
    """
    allow_partial_load = False
    overwrite = False

    @classmethod
    def from_cfg(cls, cfg) -> 'SafeRunner':
        """Build from a config, with :func:`prepare_image_loading`."""
        cfg = copy.deepcopy(cfg)
        prepare_image_loading(cfg)
        runner = super().from_cfg(cfg)
        runner.allow_partial_load = bool(cfg.get('allow_partial_load', False))
        runner.overwrite = bool(cfg.get('overwrite', False))
        return runner

    def setup_env(self, env_cfg: dict) -> None:
        """As mmengine, then keep the timestamp unique in this process.

        mmengine keys the logger, message hub and visualiser by
        ``<config>_<timestamp>`` (to the second): a second run started in the
        same second would reuse the first run's logger and write its log
        into the first run's work dir. A suffix (``_1``, ...) avoids that.
        """
        super().setup_env(env_cfg)
        base, n = self._timestamp, 1
        # MMLogger has no public list of its instances' names.
        while any(name.endswith(self._timestamp)
                  for name in MMLogger._instance_dict):
            self._timestamp = f'{base}_{n}'
            n += 1

    # ------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------

    def load_or_resume(self) -> None:
        """Resume from the newest loadable checkpoint, or as mmengine does
        (an explicit ``load_from``)."""
        if self._has_loaded:
            return None
        if self._resume and self._load_from is None:
            path = self._newest_loadable()
            if path is not None:
                self.resume(path)
            return None
        return super().load_or_resume()

    def _newest_loadable(self) -> Optional[str]:
        candidates = resume_candidates(self.work_dir)
        if not candidates:
            self.logger.info(f'resume: no checkpoint in {self.work_dir}; '
                             'starting from scratch.')
            return None
        problems = []
        for path in candidates:
            try:
                self._preloaded = (path, read_checkpoint(path))
            except RunError as err:
                problems.append(str(err))
                continue
            if problems:
                self.logger.warning(
                    f'resume: the newest checkpoint could not be loaded '
                    f'({"; ".join(problems)}); resuming from {path}, the '
                    'newest loadable one.')
            else:
                self.logger.info(f'resume: the latest checkpoint is {path}.')
            return path
        raise RunError(
            f'resume: no loadable checkpoint in {self.work_dir}; tried: '
            f'{"; ".join(problems)}. Give --resume CKPT, or start afresh '
            '(no --resume, with --overwrite).')

    def _read(self, filename: str, map_location: Union[str, Callable]):
        preloaded = getattr(self, '_preloaded', None)
        self._preloaded = None
        if preloaded is not None and preloaded[0] == filename:
            return preloaded[1]
        location = 'cpu' if callable(map_location) else map_location
        return read_checkpoint(filename, map_location=location)

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:
        """Load a checkpoint's weights, refusing one that does not fit.

        Args are those of :meth:`mmengine.runner.Runner.load_checkpoint`;
        ``strict`` is implied unless ``allow_partial_load`` is set (and
        never when resuming). URLs are loaded by mmengine, unchecked.
        """
        if not is_local_path(filename):
            return super().load_checkpoint(filename, map_location, strict,
                                           revise_keys)
        checkpoint = self._read(filename, map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(
            self.model) else self.model
        state = state_dict_of(checkpoint)
        mismatch = state_dict_mismatch(model, state)
        if mismatch.count:
            state = self._partial_state(filename, mismatch, state)
            checkpoint = dict(checkpoint, state_dict=state)
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict=False, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def _partial_state(self, filename: str, mismatch, state: dict) -> dict:
        """Refuse a mismatch, or keep only the fitting tensors."""
        detail = mismatch_text(mismatch)
        if getattr(self, '_resuming', False):
            raise RunError(
                f'resume: {filename} belongs to another model ({detail}). '
                'Resume with the config that wrote it, or pick another '
                '--work-dir for this config.')
        if not self.allow_partial_load:
            raise RunError(
                f'{filename} does not fit the model ({mismatch.count} keys; '
                f'{detail}). Use a checkpoint of this model, or '
                '--allow-partial-load to load only the tensors that fit.')
        self.logger.warning(
            f'PARTIAL LOAD (allow_partial_load=True) of {filename}: '
            f'{mismatch.count} keys do not fit and keep their initial '
            f'values: {detail}')
        bad = set(mismatch.unloadable)
        return {k: v for k, v in state.items() if k not in bad}

    def resume(self,
               filename: str,
               resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default') -> None:
        """Resume as mmengine does, refusing a checkpoint of another model
        or optimizer configuration with a clear message."""
        self._resuming = True
        try:
            super().resume(filename, resume_optimizer, resume_param_scheduler,
                           map_location)
        except ValueError as err:
            if isinstance(err, RunError) or 'parameter group' not in str(
                    err):
                raise
            raise RunError(
                f'resume: the optimizer state in {filename} does not fit '
                f'this config\'s optimizer ({err}); the checkpoint comes '
                'from another config.') from None
        finally:
            self._resuming = False

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------

    def train(self):
        """Refuse to overwrite an earlier run, then train."""
        if not self._resume:
            self._keep_earlier_run()
        return super().train()

    def _keep_earlier_run(self) -> None:
        earlier = sorted(
            name for name in os.listdir(self.work_dir)
            if CKPT_NAME.match(name) or name == 'last_checkpoint')
        if not earlier:
            return
        if not self.overwrite:
            raise RunError(
                f'{self.work_dir} holds checkpoints of an earlier run '
                f'({", ".join(earlier[:4])}): add --resume to continue it, '
                '--overwrite to start afresh (they are moved to a '
                'previous_<time>/ folder), or choose another --work-dir.')
        if self.rank != 0:
            return
        keep = osp.join(self.work_dir,
                        time.strftime('previous_%Y%m%d_%H%M%S'))
        os.makedirs(keep, exist_ok=True)
        for name in earlier:
            os.replace(osp.join(self.work_dir, name), osp.join(keep, name))
        self.logger.warning(
            f'--overwrite: moved the earlier run\'s {len(earlier)} '
            f'checkpoint files to {keep}; starting afresh.')

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
        total batch is processes x batch size x ``accumulative_counts``
        (mmengine's own scaling leaves the accumulation out)."""
        if not auto_scale_lr or not auto_scale_lr.get('enable', False):
            return None
        if 'base_batch_size' not in auto_scale_lr:
            raise RunError('auto_scale_lr needs base_batch_size: the total '
                           'batch the learning rate was set for.')
        wrappers = list(optim_wrapper.values()) if isinstance(
            optim_wrapper, OptimWrapperDict) else [optim_wrapper]
        accum = {getattr(w, '_accumulative_counts', 1) for w in wrappers}
        if len(accum) != 1:
            raise RunError('auto_scale_lr: the optimizer wrappers accumulate '
                           f'over different counts {sorted(accum)}.')
        loader = self._train_dataloader
        batch = loader.batch_size if isinstance(
            loader, DataLoader) else loader['batch_size']
        accum = accum.pop()
        total = self.world_size * batch * accum
        base = auto_scale_lr['base_batch_size']
        ratio = total / base
        self.logger.info(
            f'auto_scale_lr: total batch {total} = {self.world_size} '
            f'processes x {batch} x {accum} accumulated steps, for a base of '
            f'{base}: the lr is scaled by {ratio:g}.')
        for wrapper in wrappers:
            for group in wrapper.optimizer.param_groups:
                group['lr'] = group['lr'] * ratio
