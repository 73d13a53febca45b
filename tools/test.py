"""Evaluate a checkpoint on a config's test set with mmengine's Runner.

::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--allow-partial-load] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

The metrics of ``test_evaluator`` are logged and written to the work
directory; ``--out`` also pickles every prediction (mmengine's
``DumpResults``). A checkpoint that does not fit the model, or a file that
is not a checkpoint, stops the test with the reason. ``--launcher`` also
works without a GPU (with ``env_cfg.dist_cfg.backend=gloo``). The logic
lives in :mod:`mmumae.apis`.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

# This checkout's package first, installed or not; importing it registers
# mmumae's modules and applies the compatibility fixes.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmumae.apis import (add_common_args, merge_test_args,  # noqa: E402
                         parse_tool_args, run_tool)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Test a checkpoint with mmumae\'s strict mmengine '
        'Runner.')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument('checkpoint', help='checkpoint file to evaluate')
    parser.add_argument(
        '--out',
        help='also dump every prediction to this pickle file (.pkl or '
        '.pickle)')
    add_common_args(parser)
    return parse_tool_args(parser, argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    return run_tool(parse_args(argv), merge_test_args, 'test')


if __name__ == '__main__':
    main()
