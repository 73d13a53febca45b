"""Make the small, deterministic demo data sets (ImageNet, COCO and ADE20K
layouts) from scikit-image's photographs: :mod:`mmumae_tools.demo_data`.

Usage::

    python tools/dataset_converters/make_demo_data.py [--out DIR] [--force]
"""
import argparse
from typing import List, Optional

from mmumae_tools.demo_data import make_demo_data


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/demo',
                        help='output folder (default: data/demo)')
    parser.add_argument('--force', action='store_true',
                        help='rewrite even if the stamp is current')
    return parser.parse_args(argv)


if __name__ == '__main__':
    args = parse_args()
    make_demo_data(args.out, force=args.force)
