"""Train (or pre-train) a model from a config, as mmpretrain's train.py.

::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--overwrite] [--amp] [--auto-scale-lr] [--no-validate]
        [--no-pin-memory] [--no-persistent-workers]
        [--allow-partial-load] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

The flags change the config and nothing else does: the run safety (the
work-dir lock, the NaN stop, exact resume, strict loading, atomic
checkpoints, data checks) comes from the config's base runtime, so
``mim train mmpretrain CONFIG`` trains the same thing. A problem with the
run's inputs ends it with one ``error: ...`` line and exit status 1.
"""
import argparse
from typing import Optional, Sequence

from mmengine.config import Config

from runsafe import RunError

from mmumae_tools.cli import add_common_args, merge_common_args, run_tool


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description='Train a model.')
    parser.add_argument(
        '--resume', nargs='?', const='auto', default=None, metavar='CKPT',
        help='resume from CKPT; without a value, from the newest loadable '
        'checkpoint in the work directory (a fresh start if none)')
    parser.add_argument(
        '--overwrite', action='store_true',
        help="start afresh in a work dir that holds an earlier run's "
        'checkpoints (they are moved to previous_<time>/)')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision '
        '(AmpOptimWrapper; fp32 with a warning on a machine without a GPU)')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the lr by the total batch over '
        'auto_scale_lr.base_batch_size')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument('--no-pin-memory', action='store_true',
                        help='pin_memory=False in every dataloader')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='persistent_workers=False in every dataloader')
    add_common_args(parser)
    return parser.parse_args(argv)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to ``cfg``; only the flags change it."""
    merge_common_args(cfg, args)
    if args.resume is not None:
        cfg.resume = True
        cfg.load_from = None if args.resume == 'auto' else args.resume
    if args.overwrite:
        cfg.overwrite = True
    if args.amp:
        if 'type' not in cfg.optim_wrapper:
            raise RunError('--amp needs a single optim_wrapper with a '
                           '`type`; edit the sub-wrappers instead.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise RunError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=N)` in the config (the total batch size the '
                'learning rate was set for).')
        cfg.auto_scale_lr.enable = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key) and args.no_pin_memory:
            cfg[key].pin_memory = False
        if cfg.get(key) and args.no_persistent_workers:
            cfg[key].persistent_workers = False
    return cfg


def main(argv: Optional[Sequence[str]] = None):
    return run_tool(parse_args(argv), merge_args, 'train')


if __name__ == '__main__':
    main()
