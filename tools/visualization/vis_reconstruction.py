"""Reconstruction figure of a UM-MAE checkpoint on a few images of the
config's training set, or of ``--img-dir``, through its pipeline
(:mod:`mmumae_tools.vis`)."""
import argparse
from typing import List, Optional

from mmengine.config import Config, DictAction

from mmumae_tools.vis import reconstruction_figure


def main(argv: Optional[List[str]] = None) -> str:
    """Save the figure (``argv`` defaults to ``sys.argv[1:]``); its path."""
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
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options or {})
    out = reconstruction_figure(cfg, args.checkpoint, args.out, args.num,
                                args.img_dir, args.seed, args.device)
    print(f'saved {out}')
    return out


if __name__ == '__main__':
    main()
