"""The transfer chain on the CPU: pre-train -> fine-tune -> detect, segment
(:mod:`mmumae_tools.transfer_demo`; ``make transfer-demo`` runs it after
``make data``)."""
import argparse

from mmumae_tools.transfer_demo import run_chain

if __name__ == '__main__':
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
    args = parser.parse_args()
    print('\n' + run_chain(args.work_dir, args.pretrain_dir,
                           not args.no_random))
