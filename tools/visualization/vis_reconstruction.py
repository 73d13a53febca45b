"""Reconstruction figure of a UM-MAE checkpoint on a few images of the
config's training set, or of ``--img-dir``, through its pipeline
(:mod:`mmumae_tools.vis`)::

    python tools/visualization/vis_reconstruction.py CONFIG CHECKPOINT \
        [--img-dir DIR] [--num 4] [--out reconstruction.png] [--seed 0]
"""
import argparse
from typing import List, Optional

from mmengine.config import Config, DictAction

from mmumae_tools.vis import reconstruction_figure


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Save a UM-MAE reconstruction figure for a checkpoint.')
    parser.add_argument('config', help='the pre-training config')
    parser.add_argument('checkpoint', help='a checkpoint of that config')
    parser.add_argument('--img-dir', help='use the images in this folder '
                        'instead of the config\'s training set')
    parser.add_argument('--num', type=int, default=4, help='rows')
    parser.add_argument('--out', default='reconstruction.png')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed for crops and masks')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> str:
    """Save the figure; returns its path."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    out = reconstruction_figure(cfg, args.checkpoint, args.out, args.num,
                                args.img_dir, args.seed, args.device)
    print(f'saved {out}')
    return out


if __name__ == '__main__':
    main()
