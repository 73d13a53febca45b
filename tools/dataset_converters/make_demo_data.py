"""Make the small, deterministic demo data sets (ImageNet, COCO and ADE20K
layouts) from scikit-image's photographs: :mod:`mmumae_tools.demo_data`."""
import argparse

from mmumae_tools.demo_data import make_demo_data

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/demo',
                        help='output folder (default: data/demo)')
    parser.add_argument('--force', action='store_true',
                        help='rewrite even if the stamp is current')
    args = parser.parse_args()
    make_demo_data(args.out, force=args.force)
