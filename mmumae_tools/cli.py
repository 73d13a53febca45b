"""The command line that ``tools/train.py`` and ``tools/test.py`` share:
options that set config keys, as mmpretrain's ``merge_args`` does, and
building the config's runner."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from runsafe import RunError, error_line

__all__ = ['add_common_args', 'merge_common_args', 'run_tool', 'build_runner']


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options ``tools/train.py`` and ``tools/test.py`` share."""
    parser.add_argument('config', help='path of the config file')
    parser.add_argument(
        '--work-dir', help='where logs and checkpoints go (default: the '
        "config's work_dir, else work_dirs/<config name>)")
    parser.add_argument(
        '--allow-partial-load', action='store_true',
        help='load a checkpoint that does not fit the model: only the '
        'tensors that fit, with a warning naming the others')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=10')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='how the processes were launched')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)


def merge_common_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the shared options to ``cfg`` (``--cfg-options`` first)."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join(
            'work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.allow_partial_load:
        cfg.allow_partial_load = True
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The config's runner, as mmpretrain's ``tools/train.py`` builds it:
    ``runner_type`` from ``RUNNERS``, else mmengine's ``Runner``."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg else \
        Runner.from_cfg(cfg)


def run_tool(args: argparse.Namespace, merge_args, mode: str):
    """Read ``args.config``, apply the command line with ``merge_args``,
    build the config's runner (``runner_type``, as mmpretrain's tools do)
    and call its ``train()`` or ``test()``.

    A :class:`~runsafe.RunError` (bad flags, checkpoint, data or work dir,
    non-finite loss, full disk) ends the process with one ``error: ...``
    line and exit status 1, without a traceback.
    """
    try:
        cfg = merge_args(Config.fromfile(args.config), args)
        runner = build_runner(cfg)
        return getattr(runner, mode)()
    except RunError as err:
        raise SystemExit(f'error: {error_line(err)}') from None
