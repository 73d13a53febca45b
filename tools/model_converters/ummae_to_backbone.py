"""mmumae checkpoint -> backbone-only checkpoint.

Usage:
    python tools/model_converters/ummae_to_backbone.py IN OUT [--config CFG]

``IN`` is a checkpoint saved by mmengine's Runner: a pre-training model
(``UMMAE``, ``SimMIM``: decoder and head are dropped) or a fine-tuned
classifier (the head is dropped). ``OUT`` holds the ``backbone.*`` tensors,
prefix kept, under ``state_dict`` (no optimizer or message hub), so both
files load with ``init_cfg=dict(type='Pretrained', checkpoint=...,
prefix='backbone.')`` in mmpretrain, mmdet and mmseg. The backbone of the
config saved in the checkpoint (or ``--config``) is built and its keys
compared with the kept ones; a missing, extra or mis-shaped key stops the
conversion.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, Optional

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from converter_utils import (ConversionError, backbone_from_config,  # noqa
                             check_keys, load_checkpoint_file, prefix_counts,
                             save_checkpoint_file, shapes_of)

PREFIX = 'backbone.'


def backbone_state(ckpt: dict, path: str) -> Dict[str, torch.Tensor]:
    """The ``backbone.*`` tensors of an mmumae checkpoint, prefix kept."""
    state = ckpt.get('state_dict')
    if state is None:
        if 'model' in ckpt:
            raise ConversionError(
                f'{path} stores its weights under "model" (a release '
                f'checkpoint of the reference code?); convert it with '
                f'tools/model_converters/official_to_mmumae.py.')
        state = ckpt
    kept = {k: v for k, v in state.items() if k.startswith(PREFIX)}
    if not kept:
        sample = ', '.join(list(state)[:3])
        raise ConversionError(
            f'no key of {path} starts with {PREFIX!r} (keys look like: '
            f'{sample}); pass a checkpoint of an mmumae model with a '
            f'backbone.')
    dropped = [k for k in state if not k.startswith(PREFIX)]
    print(f'kept {len(kept)} backbone tensors; dropped '
          f'{len(dropped)} ({prefix_counts(dropped) or "none"})')
    return kept


def convert(src: str, dst: str, config: Optional[str] = None) -> None:
    """Convert ``src`` to a backbone-only checkpoint at ``dst``.

    Args:
        src (str): mmumae checkpoint (pre-training or fine-tuned).
        dst (str): Output path.
        config (str, optional): Config whose backbone the keys are checked
            against. Defaults to the config saved in the checkpoint.

    Raises:
        ConversionError: When the backbone keys do not match its config.
    """
    ckpt = load_checkpoint_file(src)
    state = backbone_state(ckpt, src)
    meta = dict(ckpt.get('meta') or {})
    cfg_text = meta.get('cfg')
    if config is None and not cfg_text:
        print('no config saved in the checkpoint and no --config: the '
              'backbone keys are not checked against a model')
    else:
        backbone = backbone_from_config(cfg_text, config)
        expected = {PREFIX + k: s
                    for k, s in shapes_of(backbone.state_dict()).items()}
        check_keys(shapes_of(state), expected,
                   f'{type(backbone).__name__} backbone')
    meta.update(converted_from=osp.abspath(src),
                converter='tools/model_converters/ummae_to_backbone.py')
    save_checkpoint_file(state, meta, dst)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Keep only the backbone of an mmumae checkpoint '
        '(pre-training or fine-tuned), with its "backbone." prefix.')
    parser.add_argument('src', help='input mmumae checkpoint')
    parser.add_argument('dst', help='output backbone-only checkpoint')
    parser.add_argument(
        '--config',
        help='config to check the backbone keys against (default: the '
        'config saved in the checkpoint)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        convert(args.src, args.dst, args.config)
    except ConversionError as err:
        print(f'refused: {err}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
