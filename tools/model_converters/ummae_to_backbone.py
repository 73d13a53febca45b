"""mmumae checkpoint -> backbone-only checkpoint
(:mod:`mmumae_tools.converters.backbone`; README.md in this folder). A bad
input answers one line ``refused: ...`` (exit status 1) and writes nothing;
the output is written atomically and never replaces the input."""
import argparse
from typing import List, Optional

from mmumae_tools.converters import ConversionError, run_or_refuse
from mmumae_tools.converters.backbone import convert

__all__ = ['ConversionError', 'convert', 'main']


def main(argv: Optional[List[str]] = None) -> None:
    """Convert (``argv`` defaults to ``sys.argv[1:]``); a refused
    conversion exits with status 1."""
    parser = argparse.ArgumentParser(
        description='Keep only the backbone of an mmumae checkpoint '
        '(pre-training or fine-tuned), with its "backbone." prefix.')
    parser.add_argument('src', help='input mmumae checkpoint')
    parser.add_argument('dst', help='output backbone-only checkpoint')
    parser.add_argument('--config', help='config to check the backbone keys '
                        'against (default: the one saved in the checkpoint)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        '--stock-config',
        help='write the backbone for the stock Swin of this config (e.g. '
        'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py); '
        'UMStockSwinTransformer checkpoints only')
    group.add_argument(
        '--window-size', type=int,
        help='write the backbone for mmpretrain\'s own SwinTransformer at '
        'this window (bias tables resized here: mmpretrain\'s own resize '
        'needs SciPy < 1.14); UMStockSwinTransformer checkpoints only')
    args = parser.parse_args(argv)
    run_or_refuse(convert, args.src, args.dst, args.config,
                  args.stock_config, args.window_size)


if __name__ == '__main__':
    main()
