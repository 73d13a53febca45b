"""Write an ImageNet-layout, stratified train/val/test copy of the ELPV
solar-cell images from the installed ``elpv-dataset`` package
(``pip install -r requirements/study.txt``); layout, split and classes:
:mod:`mmumae_tools.elpv`."""
import argparse
import sys
from typing import List, Optional

from mmumae_tools.elpv import ElpvError, prepare_elpv


def main(argv: Optional[List[str]] = None) -> int:
    """Write the copy and print its counts; 1 with an ``error:`` line."""
    p = argparse.ArgumentParser(description=__doc__.split(';')[0])
    p.add_argument('--out', default='data/elpv',
                   help='a new or empty folder, or an earlier copy')
    p.add_argument('--classes', default='binary', choices=['binary', '4'],
                   help='binary: functional (p < 0.5) vs defective; '
                   '4: the four defect-probability levels')
    p.add_argument('--test-ratio', type=float, default=0.25)
    p.add_argument('--val-ratio', type=float, default=0.15,
                   help='fraction of the non-test images held out for '
                   'choosing hyper-parameters')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true',
                   help='rewrite even if the same split is already there')
    args = p.parse_args(argv)
    try:
        summary = prepare_elpv(args.out, args.classes, args.test_ratio,
                               args.val_ratio, args.seed, args.force)
    except ElpvError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    for part, c in summary['counts'].items():
        print(f'[elpv] {args.out}/{part}: {sum(c.values())} images '
              + ', '.join(f'{k} {v}' for k, v in c.items()))
    print(f'[elpv] majority class on test: '
          f'{summary["test_majority_accuracy"]}%')
    return 0


if __name__ == '__main__':
    sys.exit(main())
