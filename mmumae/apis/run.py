"""Build the runner of a tool and run it."""
import argparse
from typing import Callable, List

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmumae.engine import SafeRunner
from mmumae.utils import RunError
from .dist import check_launcher, setup_cpu_dist, teardown_dist

__all__ = ['build_runner', 'run_tool']


def build_runner(cfg: Config) -> Runner:
    """Build ``cfg.runner_type`` from ``RUNNERS``, else a
    :class:`~mmumae.engine.SafeRunner`."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return SafeRunner.from_cfg(cfg)


def run_tool(args: argparse.Namespace,
             merge: Callable[[Config, argparse.Namespace], List[str]],
             mode: str):
    """Read ``args.config``, apply the command line with ``merge``, start
    a CPU process group where one is needed, build the runner and call its
    ``train()`` or ``test()``.

    A :class:`~mmumae.utils.RunError` (bad checkpoint, data or work dir)
    ends the process with ``error: <message>`` and status 1, without a
    traceback.

    Args:
        args (argparse.Namespace): The tool's parsed command line.
        merge (Callable): :func:`merge_train_args` or
            :func:`merge_test_args`; returns warnings to log.
        mode (str): ``'train'`` or ``'test'``.

    Returns:
        What ``runner.train()`` or ``runner.test()`` returns.
    """
    check_launcher(args.launcher)
    try:
        cfg = Config.fromfile(args.config)
        warnings = merge(cfg, args)
        cpu_dist = setup_cpu_dist(cfg)
        try:
            runner = build_runner(cfg)
            # Through the runner, so they also reach the run's log file.
            for message in ([cpu_dist] if cpu_dist else []) + warnings:
                runner.logger.warning(message)
            return getattr(runner, mode)()
        finally:
            if cpu_dist is not None:
                teardown_dist()
    except RunError as err:
        raise SystemExit(f'error: {err}') from None
