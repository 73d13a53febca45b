"""mmengine's Runner, made safe to run: resume that falls back, data
checked before the first step, lr scaling that counts gradient
accumulation, and runs on a machine without a GPU (mixed precision falls
back to fp32, distributed runs use gloo)."""
import copy
import datetime
import itertools
import os
import os.path as osp
from typing import List, Optional, Tuple

import torch.distributed as torch_dist
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict
from mmengine.registry import OPTIM_WRAPPERS, RUNNERS
from mmengine.runner import Runner

from .checkpoint import read_checkpoint, resume_candidates
from .data_checks import check_batches, check_dataset_paths
from .errors import RunError
from .hooks import WorkDirHook, WorkDirLock

__all__ = [
    'SafeRunner', 'newest_loadable_checkpoint', 'has_gpu', 'fp32_without_gpu'
]

# Keys that only AmpOptimWrapper understands; OptimWrapper rejects them.
_AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')
# Runs built in this process: mmengine names a run's logger and message
# hub <experiment>_<second>, so a second run within the same second would
# share the first one's; later runs get a numbered experiment name.
_RUNS = itertools.count()


def has_gpu() -> bool:
    """Whether a GPU (CUDA, NPU, MLU, MUSA) is available: mmengine's
    ``AmpOptimWrapper`` and its launchers need one."""
    return get_device() != 'cpu'


def _is_amp(wrapper: dict) -> bool:
    kind = wrapper.get('type')
    if isinstance(kind, str):
        kind = OPTIM_WRAPPERS.get(kind)
    return isinstance(kind, type) and issubclass(kind, AmpOptimWrapper)


def _has_work_dir_hook(default_hooks, custom_hooks) -> bool:
    """Whether hook configs (or hooks) include a ``WorkDirHook``."""
    hooks = list((default_hooks or {}).values()) + list(custom_hooks or [])
    for hook in hooks:
        kind = hook.get('type') if isinstance(hook, dict) else hook
        if isinstance(kind, str):
            kind = kind.split('.')[-1]
        if kind in ('WorkDirHook', WorkDirHook) or isinstance(
                kind, WorkDirHook):
            return True
    return False


def newest_loadable_checkpoint(work_dir: str, logger) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that reads, or None.

    Candidates come from :func:`runsafe.resume_candidates`; a damaged
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


def fp32_without_gpu(optim_wrapper: dict) -> Tuple[dict, List[str]]:
    """An optim-wrapper config for a machine without a GPU.

    Args:
        optim_wrapper (dict): ``cfg.optim_wrapper``: one wrapper, or one per
            sub-model (a multi-optimizer constructor). Not changed.

    Returns:
        tuple[dict, list[str]]: A copy whose ``AmpOptimWrapper`` entries
        are ``OptimWrapper`` without the AMP-only keys, and one warning per
        entry changed.
    """
    optim_wrapper = copy.deepcopy(optim_wrapper)
    subs = [optim_wrapper] if 'type' in optim_wrapper else [
        v for v in optim_wrapper.values() if isinstance(v, dict)]
    messages = []
    for sub in filter(_is_amp, subs):
        dropped = {k: sub.pop(k) for k in _AMP_ONLY_KEYS if k in sub}
        sub['type'] = 'OptimWrapper'
        messages.append(
            'The config asks for AmpOptimWrapper (mixed precision), which '
            'mmengine only supports on a GPU, and no GPU is available: '
            'falling back to OptimWrapper in fp32'
            f'{f" (dropped {dropped})" if dropped else ""}. Results match '
            'AMP training up to numerical precision; it is only slower.')
    return optim_wrapper, messages


@RUNNERS.register_module()
class SafeRunner(Runner):
    """mmengine's ``Runner`` with public methods changed for safe runs.

    * :meth:`load_or_resume`: ``resume=True`` without ``load_from`` resumes
      from :func:`newest_loadable_checkpoint` (``last_checkpoint`` may name
      the file relative to the work dir, see ``WorkDirHook``).
    * :meth:`setup_env` (:meth:`lock_work_dir`): with a ``WorkDirHook`` in
      the config, the work-dir lock is taken while the runner is built,
      before mmengine dumps the config and creates the log folder, so a
      run refused there (a busy or read-only work dir) writes nothing into
      it; a work dir that cannot be created is refused in one line too.
    * :meth:`train` / :meth:`test`: the data roots are checked first
      (:func:`~runsafe.data_checks.check_dataset_paths`), and the work-dir
      lock is released however the run ends.
    * :meth:`build_train_loop`: a training set without a single batch is
      refused before the first iteration.
    * :meth:`scale_lr`: ``auto_scale_lr`` counts gradient accumulation in
      the total batch (mmengine's leaves it out).
    * Without a GPU: :meth:`build_optim_wrapper` builds an
      ``AmpOptimWrapper`` config as ``OptimWrapper`` (fp32) with a warning,
      :meth:`setup_env` starts a gloo process group for ``torchrun``
      launches, and :meth:`wrap_model` wraps without device ids.

    The config is never rewritten: what a run dumps to its work dir is what
    it was given. Selected with ``runner_type='SafeRunner'``.
    """

    def __init__(self, *args, **kwargs) -> None:
        count = next(_RUNS)
        cfg = kwargs.get('cfg')
        if count and kwargs.get('experiment_name') is None and cfg:
            name = osp.splitext(osp.basename(cfg.filename or 'run'))[0]
            kwargs['experiment_name'] = f'{name}_run{count + 1}'
        #: The work-dir lock taken in :meth:`setup_env` (None: the config
        #: has no ``WorkDirHook``, or this is not rank 0).
        self.work_dir_lock: Optional[WorkDirLock] = None
        self.locks_work_dir = _has_work_dir_hook(
            kwargs.get('default_hooks'), kwargs.get('custom_hooks'))
        work_dir = kwargs.get('work_dir')
        if isinstance(work_dir, str) and not osp.isdir(work_dir):
            try:  # mmengine's own makedirs would end in a traceback
                os.makedirs(work_dir, exist_ok=True)
            except OSError as err:
                raise RunError(
                    f'cannot create the work dir {work_dir} '
                    f'({err.strerror or type(err).__name__}); choose another '
                    '--work-dir, or make its parent writable.') from None
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._release_work_dir()
            raise

    def setup_env(self, env_cfg: dict) -> None:
        """mmengine's set-up; without a GPU, a distributed run starts a
        gloo process group itself (mmengine's ``init_dist`` needs CUDA)."""
        if self.distributed and not has_gpu() and \
                not torch_dist.is_initialized():
            if self.launcher != 'pytorch':
                raise RunError(
                    f'--launcher {self.launcher} without a GPU: launch CPU '
                    'processes with torchrun (tools/dist_train.sh), '
                    '--launcher pytorch.')
            timeout = (env_cfg.get('dist_cfg') or {}).get('timeout')
            torch_dist.init_process_group(
                backend='gloo', timeout=None if timeout is None else
                datetime.timedelta(seconds=timeout))
        super().setup_env(env_cfg)
        self.lock_work_dir()

    def lock_work_dir(self) -> None:
        """Take the work-dir lock of a config with a ``WorkDirHook`` (rank 0),
        before mmengine writes into the work dir (its log folder and config
        dump, right after :meth:`setup_env`): a run refused there, because
        another run holds the lock or the work dir cannot be written, leaves
        the work dir as it was. The hook adopts the lock at ``before_run``.

        Raises:
            RunError: On every rank, with rank 0's reason and the fix.
        """
        if not self.locks_work_dir:
            return
        message = None
        if self.rank == 0:
            lock = WorkDirLock(self.work_dir)
            message = lock.acquire(bool(self.cfg.get('resume')))
            if message is None:
                self.work_dir_lock = lock
        WorkDirHook.check(self, message)

    def wrap_model(self, model_wrapper_cfg: Optional[dict], model):
        """mmengine's wrapping; without a GPU, with no device ids (torch's
        DDP refuses them for a CPU module)."""
        if self.distributed and not has_gpu():
            model_wrapper_cfg = dict(
                dict(type='MMDistributedDataParallel',
                     broadcast_buffers=False,
                     find_unused_parameters=self.cfg.get(
                         'find_unused_parameters', False)),
                **(model_wrapper_cfg or {}), device_ids=None)
        return super().wrap_model(model_wrapper_cfg, model)

    def build_optim_wrapper(self, optim_wrapper):
        """mmengine's build; without a GPU, ``AmpOptimWrapper`` configs are
        built as ``OptimWrapper`` in fp32 (:func:`fp32_without_gpu`)."""
        if isinstance(optim_wrapper, dict) and not has_gpu():
            optim_wrapper, messages = fp32_without_gpu(optim_wrapper)
            for message in messages:
                self.logger.warning(message)
        return super().build_optim_wrapper(optim_wrapper)

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        """mmengine's build; ``persistent_workers`` is dropped when
        ``num_workers=0`` (a common debugging override torch refuses)."""
        if isinstance(dataloader, dict) and dataloader.get(
                'persistent_workers') and not dataloader.get('num_workers'):
            dataloader = dict(dataloader, persistent_workers=False)
        return Runner.build_dataloader(dataloader, seed, diff_rank_seed)

    def _release_work_dir(self) -> None:
        for hook in getattr(self, 'hooks', []):  # none while being built
            if isinstance(hook, WorkDirHook):
                hook.release()
        if self.work_dir_lock is not None:
            self.work_dir_lock.release()
            self.work_dir_lock = None

    def dump_config(self) -> None:
        """mmengine's dump of the config into the work dir, deferred (with
        a ``WorkDirHook``) from construction to :meth:`train` / :meth:`test`,
        after the work dir's checks: a refused run does not replace the
        config of the run that owns the work dir."""
        if self.locks_work_dir and not getattr(self, 'checked_work_dir',
                                               False):
            return
        super().dump_config()

    def _checked_dump(self, training: bool) -> None:
        if self.locks_work_dir and not getattr(self, 'checked_work_dir',
                                               False):
            WorkDirHook.check(self, WorkDirHook.keep_earlier_run(self) if
                              training and self.rank == 0 else None)
            self.checked_work_dir = True
            self.dump_config()

    def train(self):
        """Check the training and validation data and the work dir (an
        earlier run's checkpoints), dump the config, then train."""
        try:
            check_dataset_paths(self.cfg,
                                ['train_dataloader', 'val_dataloader'])
            self._checked_dump(training=True)
            return super().train()
        finally:
            self._release_work_dir()

    def test(self) -> dict:
        """Check the test data, dump the config, then test."""
        try:
            check_dataset_paths(self.cfg, ['test_dataloader'])
            self._checked_dump(training=False)
            return super().test()
        finally:
            self._release_work_dir()

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
