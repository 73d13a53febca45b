"""The transfer chain on the CPU: pre-train -> fine-tune -> detect, segment
(:mod:`mmumae_tools.transfer_demo`).

Usage (``make transfer-demo`` runs it after ``make data``)::

    python tools/run_transfer_demo.py [--work-dir work_dirs/transfer_demo]
        [--pretrain-dir work_dirs/ummae_swin-mini_demo] [--no-random]
"""
import argparse
from typing import List, Optional

from mmumae_tools.transfer_demo import run_chain


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='UM-MAE transfer chain on the demo data (CPU).')
    parser.add_argument('--work-dir', default='work_dirs/transfer_demo',
                        help='where every run and results.md go')
    parser.add_argument(
        '--pretrain-dir', default='work_dirs/ummae_swin-mini_demo',
        help='pre-training work dir: its last checkpoint is reused, or '
        'tools/run_demo.sh writes one there')
    parser.add_argument('--no-random', action='store_true',
                        help='skip the random-initialisation baseline')
    return parser.parse_args(argv)


if __name__ == '__main__':
    args = parse_args()
    print('\n' + run_chain(args.work_dir, args.pretrain_dir,
                           not args.no_random))
