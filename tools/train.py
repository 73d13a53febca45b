"""Train (or pre-train) a model from an mmengine config.

::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--overwrite] [--amp] [--auto-scale-lr] [--no-validate]
        [--allow-partial-load] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

As mmpretrain's ``tools/train.py``, with mmumae's runner and the run hooks
of the shared runtime: checkpoints that do not fit are refused, ``--resume``
falls back to the newest loadable checkpoint, a work dir serves one run and
an earlier run is not overwritten without ``--overwrite``, a NaN loss stops
the run, and ``--amp`` / ``--launcher`` also work on a machine without a GPU.
Every such error is one ``error: ...`` line with exit status 1. See
docs/tools.md; the logic lives in :mod:`mmumae.apis` and
:mod:`mmumae.engine`.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

# This checkout's package first, installed or not; importing it registers
# mmumae's modules and applies the compatibility fixes.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmumae.apis import (add_common_args, merge_train_args,  # noqa: E402
                         parse_tool_args, run_tool)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Train a model with mmengine\'s Runner and mmumae\'s '
        'run hooks.')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CKPT',
        help='resume from CKPT; without a value, from the newest loadable '
        'checkpoint in the work directory (a fresh start if none)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='start afresh in a work dir that holds an earlier run\'s '
        'checkpoints (they are moved to previous_<time>/)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (AmpOptimWrapper); fp32 with a warning on a '
        'machine without a GPU')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the total batch (processes x batch x '
        'accumulation) over auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='set pin_memory=False in every dataloader')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='set persistent_workers=False in every dataloader')
    add_common_args(parser)
    return parse_tool_args(parser, argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_tool(parse_args(argv), merge_train_args, 'train')


if __name__ == '__main__':
    main()
