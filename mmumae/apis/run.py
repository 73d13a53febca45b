"""Build the runner of a tool and run it."""
import argparse
import itertools
import os.path as osp
from typing import Callable, List

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmumae.datasets import prepare_image_loading
from mmumae.engine import SafeRunner, WorkDirHook
from mmumae.utils import RunError
from .dist import setup_cpu_dist, teardown_dist

__all__ = ['build_runner', 'run_tool', 'error_line']

# Runs started in this process: mmengine names a run's logger and message
# hub <experiment>_<second>, so a second run within the same second would
# reuse the first one's; later runs get a numbered experiment_name.
_RUNS = itertools.count()


def build_runner(cfg: Config) -> Runner:
    """Build ``cfg.runner_type`` from ``RUNNERS``, else a
    :class:`~mmumae.engine.SafeRunner`."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return SafeRunner.from_cfg(cfg)


def error_line(err: Exception) -> str:
    """The message of a :class:`~mmumae.utils.RunError`, also when a
    dataloader worker raised it (torch then wraps it in a traceback)."""
    text = str(err)
    if 'Original Traceback' in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split('RunError: ', 1)[-1]
    return text


def run_tool(args: argparse.Namespace,
             merge: Callable[[Config, argparse.Namespace], List[str]],
             mode: str):
    """Read ``args.config``, apply the command line with ``merge``, start
    a CPU process group where one is needed, build the runner and call its
    ``train()`` or ``test()``.

    A :class:`~mmumae.utils.RunError` (bad checkpoint, data or work dir,
    non-finite loss, full disk) ends the process with ``error: <message>``
    (one line) and status 1, without a traceback.

    Args:
        args (argparse.Namespace): The tool's parsed command line.
        merge (Callable): :func:`merge_train_args` or
            :func:`merge_test_args`; returns warnings to log.
        mode (str): ``'train'`` or ``'test'``.

    Returns:
        What ``runner.train()`` or ``runner.test()`` returns.
    """
    runner = None
    try:
        cfg = Config.fromfile(args.config)
        warnings = merge(cfg, args)
        prepare_image_loading(cfg)
        count = next(_RUNS)
        if count and cfg.get('experiment_name') is None:
            name = osp.splitext(osp.basename(args.config))[0]
            cfg.experiment_name = f'{name}_run{count + 1}'
        started = setup_cpu_dist(cfg)
        try:
            runner = build_runner(cfg)
            # Through the runner, so they also reach the run's log file.
            for message in warnings:
                runner.logger.warning(message)
            return getattr(runner, mode)()
        finally:
            for hook in runner.hooks if runner is not None else []:
                if isinstance(hook, WorkDirHook):
                    hook.release()
            if started:
                teardown_dist()
    except RunError as err:
        raise SystemExit(f'error: {error_line(err)}') from None
