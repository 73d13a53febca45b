"""Stock-Swin mmumae checkpoint -> timm ``SwinTransformer`` state dict
(:func:`mmumae_tools.export.export_timm`; docs/install.md, "Export").

Usage:
    python tools/model_converters/ummae_to_timm.py IN OUT \
        [--img-size 224] [--window-size 7 | 16,16,16,8]

``OUT`` ending in ``.safetensors`` is written with safetensors (the timm
model name and arguments in its metadata), any other name with
``torch.save``. The line printed last is the ``timm.create_model`` call
that loads it with ``load_state_dict(..., strict=True)``. A problem ends
the process with one ``error: ...`` line and exit status 1.
"""
from typing import List, Optional

from mmumae_tools.export import export_cli, export_timm


def windows(text: str):
    """``7`` or ``16,16,16,8`` (one window per stage)."""
    parts = [int(p) for p in text.split(',')]
    return parts[0] if len(parts) == 1 else parts


def main(argv: Optional[List[str]] = None) -> None:
    """Export; a problem exits with status 1 and one ``error:`` line."""
    export_cli(
        export_timm, argv=argv,
        description='Write a stock-Swin mmumae checkpoint (pre-training, '
        'fine-tuned or backbone-only) as a state dict of timm\'s '
        'SwinTransformer.',
        dst_help='output file (.safetensors or .pth)',
        img_size_help='timm img_size (default: 224)', type=windows,
        help='timm window_size: one int, or one per stage as 16,16,16,8; '
        'bias tables of another window are resized by timm (default: 7)')


if __name__ == '__main__':
    main()
