"""Stock-Swin mmumae checkpoint -> Hugging Face transformers ``SwinModel``
folder (:func:`mmumae_tools.export.export_hf`; docs/install.md, "Export").

Usage:
    python tools/model_converters/ummae_to_hf.py IN OUT_FOLDER \
        [--img-size 224] [--window-size 7]

Writes ``config.json`` and ``model.safetensors`` with
``SwinModel.save_pretrained``; load them with
``SwinModel.from_pretrained(OUT_FOLDER)``. A problem ends the process with
one ``error: ...`` line and exit status 1.
"""
import argparse
import sys
from typing import List, Optional

from mmumae_tools.export import ExportError, export_hf


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Write a stock-Swin mmumae checkpoint (pre-training, '
        'fine-tuned or backbone-only) as a transformers SwinModel folder.')
    parser.add_argument('src', help='input mmumae checkpoint')
    parser.add_argument('dst', help='output folder (created)')
    parser.add_argument('--img-size', type=int, default=224,
                        help='SwinConfig.image_size (default: 224)')
    parser.add_argument(
        '--window-size', type=int, default=7,
        help='SwinConfig.window_size, one for all stages; bias tables of '
        'another window are resized as ummae_to_backbone.py resizes them '
        '(default: 7)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Export; a problem exits with status 1 and one ``error:`` line."""
    args = parse_args(argv)
    try:
        export_hf(args.src, args.dst, args.img_size, args.window_size)
    except ExportError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
