"""The tools' command line, applied to a config.

``tools/train.py`` and ``tools/test.py`` parse their options with
:func:`add_common_args` plus their own, then call :func:`merge_train_args`
or :func:`merge_test_args`, which edit the config in place:
``--cfg-options`` first, the dedicated flags after it (they win).
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.config import Config, DictAction
from mmengine.optim import AmpOptimWrapper

from mmumae.utils import RunError, check_dataset_paths
from .dist import has_amp_device

__all__ = [
    'add_common_args', 'parse_tool_args', 'merge_train_args',
    'merge_test_args', 'resolve_amp'
]

# Keys that only AmpOptimWrapper understands; OptimWrapper rejects them.
_AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add the options both tools share: ``--work-dir``,
    ``--allow-partial-load``, ``--cfg-options``, ``--launcher`` and
    ``--local-rank``."""
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: the config\'s '
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--allow-partial-load',
        action='store_true',
        help='load a checkpoint that does not fit the model: only the '
        'tensors that fit, with a warning naming the others (never when '
        'resuming)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=10 '
        'or key="[a,b]" for lists (no spaces inside a value)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='how the processes were launched')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank (older); torchrun sets LOCAL_RANK instead.
    parser.add_argument(
        '--local-rank', '--local_rank', dest='local_rank', type=int,
        default=0)


def parse_tool_args(parser: argparse.ArgumentParser,
                    argv: Optional[Sequence[str]] = None
                    ) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``); export ``LOCAL_RANK``."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _merge_common(cfg: Config, args: argparse.Namespace) -> None:
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('work_dirs', name)
    if args.allow_partial_load:
        cfg.allow_partial_load = True


def _is_amp_type(wrapper_type) -> bool:
    if isinstance(wrapper_type, str):
        return wrapper_type.split('.')[-1] == 'AmpOptimWrapper'
    return isinstance(wrapper_type, type) and issubclass(
        wrapper_type, AmpOptimWrapper)


def _amp_wrapper_cfgs(optim_wrapper: dict) -> List[dict]:
    """Return the optim-wrapper dicts (one, or one per sub-model) in
    ``optim_wrapper`` that ask for ``AmpOptimWrapper``."""
    if 'type' in optim_wrapper:
        return [optim_wrapper] if _is_amp_type(optim_wrapper['type']) else []
    # A multi-optimizer config (a constructor building an OptimWrapperDict)
    # lists one wrapper dict per sub-model.
    return [
        value for value in optim_wrapper.values()
        if isinstance(value, dict) and _is_amp_type(value.get('type'))
    ]


def resolve_amp(cfg: Config, enable_amp: bool = False) -> List[str]:
    """Turn mixed precision on or off in ``cfg`` for this machine.

    Args:
        cfg (Config): The full config; ``cfg.optim_wrapper`` is edited in
            place.
        enable_amp (bool): ``--amp`` was given. Defaults to False.

    Returns:
        list[str]: Warnings to log (empty when nothing was changed or
        everything requested is available).
    """
    messages = []
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is None:
        return messages
    if has_amp_device():
        if enable_amp:
            if 'type' not in optim_wrapper:
                raise RunError(
                    '--amp needs a single optim_wrapper with a `type`; edit '
                    'the sub-wrappers of this config instead.')
            optim_wrapper['type'] = 'AmpOptimWrapper'
            optim_wrapper.setdefault('loss_scale', 'dynamic')
        return messages

    if enable_amp:
        messages.append(
            '--amp was given but no GPU (CUDA/NPU/MLU/MUSA) is available: '
            'training in fp32 instead.')
    for wrapper in _amp_wrapper_cfgs(optim_wrapper):
        dropped = {k: wrapper.pop(k) for k in _AMP_ONLY_KEYS if k in wrapper}
        wrapper['type'] = 'OptimWrapper'
        detail = f' (dropped {dropped})' if dropped else ''
        messages.append(
            'The config asks for AmpOptimWrapper (mixed precision), which '
            'mmengine only supports on a GPU, and no GPU is available: '
            f'falling back to OptimWrapper in fp32{detail}. Results match '
            'AMP training up to numerical precision; it is only slower.')
    return messages


def _fix_dataloader(loader: Optional[dict], args: argparse.Namespace,
                    pin_default: bool, scope: Optional[str]) -> None:
    if not loader:
        return
    loader.setdefault('pin_memory', pin_default)
    if scope in (None, 'mmpretrain'):
        # as mmpretrain's train.py; mmdet/mmseg keep mmengine's default
        # (pseudo_collate), which their data samples need.
        loader.setdefault('collate_fn', dict(type='default_collate'))
    if getattr(args, 'no_pin_memory', False):
        loader['pin_memory'] = False
    if getattr(args, 'no_persistent_workers', False) or loader.get(
            'num_workers', 0) == 0:
        # torch rejects persistent_workers=True with num_workers=0, a common
        # override when debugging (--cfg-options ...num_workers=0).
        loader['persistent_workers'] = False


def merge_train_args(cfg: Config, args: argparse.Namespace) -> List[str]:
    """Apply ``tools/train.py``'s command line to ``cfg`` in place.

    Also checks that the training and validation data exist and hold
    images (:func:`mmumae.utils.check_dataset_paths`).

    Returns:
        list[str]: Warnings to log once the runner (and its logger) exists.

    Raises:
        RunError: ``--auto-scale-lr`` without ``base_batch_size``, or
            missing or empty training data.
    """
    _merge_common(cfg, args)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.overwrite:
        cfg.overwrite = True

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr') is None or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise RunError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=N)` in the config (the total batch size the '
                'learning rate was set for).')
        cfg.auto_scale_lr.enable = True

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    pin_default = has_amp_device()
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _fix_dataloader(cfg.get(name), args, pin_default,
                        cfg.get('default_scope'))
    check_dataset_paths(cfg, ['train_dataloader', 'val_dataloader'])
    return resolve_amp(cfg, enable_amp=args.amp)


def merge_test_args(cfg: Config, args: argparse.Namespace) -> List[str]:
    """Apply ``tools/test.py``'s command line to ``cfg`` in place.

    Returns:
        list[str]: Warnings to log (none so far).

    Raises:
        RunError: A config without a test set, or ``--out`` that is not a
            pickle file name.
    """
    _merge_common(cfg, args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if cfg.get('test_dataloader') is None or cfg.get(
            'test_evaluator') is None:
        raise RunError(
            f'{args.config} defines no test_dataloader/test_evaluator; '
            'pre-training configs have no test set: evaluate a fine-tuning '
            'config, or add them with --cfg-options.')
    _fix_dataloader(cfg.test_dataloader, args, has_amp_device(),
                    cfg.get('default_scope'))
    check_dataset_paths(cfg, ['test_dataloader'])
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise RunError(f'--out must end with .pkl or .pickle, got '
                           f'{args.out!r}')
        evaluator = cfg.test_evaluator
        metrics = list(evaluator) if isinstance(evaluator,
                                                (list, tuple)) else [evaluator]
        metrics.append(dict(type='DumpResults', out_file_path=args.out))
        cfg.test_evaluator = metrics
    return []
