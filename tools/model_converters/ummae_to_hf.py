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
from typing import List, Optional

from mmumae_tools.export import export_cli, export_hf


def main(argv: Optional[List[str]] = None) -> None:
    """Export; a problem exits with status 1 and one ``error:`` line."""
    export_cli(
        export_hf, argv=argv,
        description='Write a stock-Swin mmumae checkpoint (pre-training, '
        'fine-tuned or backbone-only) as a transformers SwinModel folder.',
        dst_help='output folder (created)',
        img_size_help='SwinConfig.image_size (default: 224)', type=int,
        help='SwinConfig.window_size, one for all stages; bias tables of '
        'another window are resized as ummae_to_backbone.py resizes them '
        '(default: 7)')


if __name__ == '__main__':
    main()
