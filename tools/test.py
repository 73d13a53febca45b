"""Evaluate a checkpoint on a config's test set, as mmpretrain's test.py.

::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--allow-partial-load] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

The metrics of ``test_evaluator`` are logged and written to the work
directory; ``--out`` also pickles every prediction (mmengine's
``DumpResults``). A checkpoint that does not fit the model, or a file that
is not a checkpoint, stops the test with one ``error: ...`` line.
"""
import argparse
from typing import Optional, Sequence

from mmengine.config import Config

from runsafe import RunError

from mmumae_tools.cli import add_common_args, merge_common_args, run_tool


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description='Test a checkpoint.')
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file to evaluate')
    parser.add_argument(
        '--out', help='also dump every prediction to this pickle file')
    return parser.parse_args(argv)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to ``cfg``; only the flags change it."""
    merge_common_args(cfg, args)
    cfg.load_from, cfg.resume = args.checkpoint, False
    if cfg.get('test_dataloader') is None or \
            cfg.get('test_evaluator') is None:
        raise RunError(
            f'{args.config} defines no test_dataloader/'
            'test_evaluator; pre-training configs have no test set: '
            'evaluate a fine-tuning config, or add them with --cfg-options.')
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise RunError(f'--out must end with .pkl or .pickle, got '
                           f'{args.out!r}')
        metrics = cfg.test_evaluator
        metrics = list(metrics) if isinstance(metrics, (list, tuple)) \
            else [metrics]
        cfg.test_evaluator = metrics + [
            dict(type='DumpResults', out_file_path=args.out)]
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> dict:
    return run_tool(parse_args(argv), merge_args, 'test')


if __name__ == '__main__':
    main()
