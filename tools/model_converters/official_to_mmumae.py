"""Release checkpoint of the reference UM-MAE code (implus/UM-MAE, weights
under ``model``) -> mmumae checkpoint
(:mod:`mmumae_tools.converters.official`; README.md in this folder). Model
and kind are detected from its keys and shapes, and checked when given; a
bad input answers one line ``refused: ...`` (exit status 1), writes
nothing."""
import argparse
from typing import List, Optional

from mmumae_tools.converters import ConversionError, run_or_refuse
from mmumae_tools.converters.official import KINDS, MODELS, convert

__all__ = ['ConversionError', 'convert', 'main']


def main(argv: Optional[List[str]] = None) -> None:
    """Convert (``argv`` defaults to ``sys.argv[1:]``); a refused
    conversion exits with status 1."""
    parser = argparse.ArgumentParser(
        description='Convert a release checkpoint of the reference UM-MAE '
        'code to an mmumae checkpoint.')
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output mmumae checkpoint')
    parser.add_argument('--model', choices=MODELS, help='default: detected')
    parser.add_argument('--kind', choices=KINDS, help='default: detected')
    parser.add_argument(
        '--num-classes', type=int,
        help='classes of a fine-tuned classifier (default: the rows of the '
        'file\'s head.weight; given, they must agree)')
    args = parser.parse_args(argv)
    run_or_refuse(convert, args.src, args.dst, args.model, args.kind,
                  args.num_classes)


if __name__ == '__main__':
    main()
