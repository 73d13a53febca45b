"""mmumae checkpoint -> backbone-only checkpoint.

Usage:
    python tools/model_converters/ummae_to_backbone.py IN OUT [--config CFG]
        [--stock-config STOCK_CFG]

``IN`` is a checkpoint saved by mmengine's Runner: a pre-training model
(``UMMAE``, ``SimMIM``: decoder and head are dropped) or a fine-tuned
classifier (the head is dropped). ``OUT`` holds the ``backbone.*`` tensors,
prefix kept, under ``state_dict`` (no optimizer or message hub), so both
files load with ``init_cfg=dict(type='Pretrained', checkpoint=...,
prefix='backbone.')`` in mmpretrain, mmdet and mmseg. The backbone of the
config saved in the checkpoint (or ``--config``) is built and its keys
compared with the kept ones; a missing, extra or mis-shaped key stops the
conversion.

``--stock-config`` (a ``UMStockSwinTransformer`` checkpoint only) writes the
backbone for the stock Swin of that config instead, e.g.
``mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``: its backbone is built
in its own scope and ``OUT`` holds exactly its keys and shapes, so mmdet's,
mmseg's and mmpretrain's own loaders find nothing missing or unexpected
(mmdet: with ``convert_weights=False``). Only names are kept as they are;
what the stock config asks beyond that is done and printed: ``mask_token``
is dropped, bias tables of another window are resized (:func:`resize_table`:
a smaller window takes the centre of the table, which holds every offset
it has, exactly; a larger one interpolates bicubically, as mmdet's and
mmseg's Swin loaders do) and their index buffers are the target's, and
output norms of stages the
pre-training did not output (``norm0``-``norm2`` for a detector) are written
at LayerNorm's initialisation (weight 1, bias 0), the values the target
would start from.

A bad input answers one line ``refused: ...`` (exit status 1) and writes
nothing; the output is written atomically and never replaces the input.
"""
import argparse
import importlib
import os.path as osp
import re
import sys
from typing import Dict, Optional

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from converter_utils import (ConversionError, backbone_from_config,  # noqa
                             check_keys, check_paths, load_checkpoint_file,
                             prefix_counts, save_checkpoint_file, shapes_of)

PREFIX = 'backbone.'
TABLE = 'relative_position_bias_table'
INDEX = 'relative_position_index'


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


def stock_backbone(config: str) -> torch.nn.Module:
    """Build (not initialise) the backbone of a stock config in its scope
    (``mmdet::...``, ``mmseg::...``, ``mmpretrain::...`` or a file)."""
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.registry import DefaultScope
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    scope = cfg.get('default_scope') or 'mmpretrain'
    if scope not in ('mmpretrain', 'mmdet', 'mmseg'):
        raise ConversionError(f'{config}: scope {scope!r} is not one of '
                              f'mmpretrain, mmdet, mmseg.')
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    backbone_cfg = dict(cfg.model.backbone)
    backbone_cfg.pop('init_cfg', None)
    backbone_cfg.pop('pretrained', None)
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(backbone_cfg)


def resize_table(table: torch.Tensor, side: int) -> torch.Tensor:
    """A ``((2W-1)**2, heads)`` bias table for a window of another size.

    A smaller window reads offsets the table already holds: its entries
    are the centre ``side x side`` of the table, unchanged. A larger one
    needs new offsets: bicubic interpolation of the whole table, as mmdet's
    and mmseg's Swin loaders do. (mmpretrain's own
    ``resize_relative_position_bias_table`` calls ``scipy.interpolate.
    interp2d``, which SciPy 1.14 removed.)
    """
    src = int(round(table.shape[0]**.5))
    heads = table.shape[1]
    grid = table.view(src, src, heads)
    if side <= src:
        lo = (src - side) // 2
        return grid[lo:lo + side, lo:lo + side].reshape(side * side, heads)
    grid = torch.nn.functional.interpolate(
        grid.permute(2, 0, 1)[None].float(), size=(side, side),
        mode='bicubic')[0].to(table.dtype)
    return grid.permute(1, 2, 0).reshape(side * side, heads)


def to_stock(state: Dict[str, torch.Tensor], source: torch.nn.Module,
             target: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The ``backbone.*`` state of ``source`` in the layout of the stock
    Swin ``target`` (see the module docstring).

    Raises:
        ConversionError: When the source is not a ``UMStockSwinTransformer``
            or a target key has no counterpart.
    """
    name = type(source).__name__
    if name != 'UMStockSwinTransformer':
        raise ConversionError(
            f'the checkpoint\'s backbone is a {name}, whose weights do not '
            f'fit a stock Swin (docs/transfer.md, "Stock Swin classes"); '
            f'--stock-config takes UMStockSwinTransformer checkpoints '
            f'(configs/ummae/ummae_stock-swin-*).')
    src = {k[len(PREFIX):]: v for k, v in state.items()}
    own = target.state_dict()
    out, resized, fresh = {}, [], []
    for key, want in own.items():
        have = src.get(key)
        if key.endswith(INDEX):
            out[key] = want.clone()  # a constant of the target's window
            continue
        if have is None and re.fullmatch(r'norm\d+\.(weight|bias)', key):
            out[key] = torch.ones_like(want) if key.endswith('weight') \
                else torch.zeros_like(want)
            fresh.append(key)
            continue
        if have is None:
            continue  # reported by check_keys below
        if key.endswith(TABLE) and have.shape != want.shape:
            have = resize_table(have, int(round(want.shape[0]**.5)))
            resized.append(key)
        out[key] = have
    dropped = sorted(set(src) - set(own))
    unplaced = [k for k in dropped if k != 'mask_token'
                and not re.fullmatch(r'norm\d+\.(weight|bias)', k)]
    if resized:
        print(f'resized {len(resized)} bias tables to the target window '
              f'(e.g. {resized[0]}: {tuple(src[resized[0]].shape)} -> '
              f'{tuple(own[resized[0]].shape)})')
    if fresh:
        print(f'not pre-trained, written at LayerNorm initialisation: '
              f'{fresh}')
    print(f'dropped (no place in the stock Swin): {dropped}')
    if unplaced:
        raise ConversionError(f'{len(unplaced)} backbone keys have no place '
                              f'in the stock Swin (e.g. {unplaced[0]}).')
    check_keys(shapes_of(out), shapes_of(own),
               f'stock {type(target).__name__} backbone')
    return {PREFIX + k: v.contiguous() for k, v in out.items()}


def convert(src: str, dst: str, config: Optional[str] = None,
            stock_config: Optional[str] = None) -> None:
    """Convert ``src`` to a backbone-only checkpoint at ``dst``.

    Args:
        src (str): mmumae checkpoint (pre-training or fine-tuned).
        dst (str): Output path (not ``src``).
        config (str, optional): Config whose backbone the keys are checked
            against. Defaults to the config saved in the checkpoint.
        stock_config (str, optional): A stock Swin config to write the
            backbone for (``UMStockSwinTransformer`` checkpoints).

    Raises:
        ConversionError: When the input is not a checkpoint, the output is
            the input, or the backbone keys do not match.
    """
    check_paths(src, dst)
    ckpt = load_checkpoint_file(src)
    state = backbone_state(ckpt, src)
    meta = dict(ckpt.get('meta') or {})
    cfg_text = meta.get('cfg')
    if config is None and not cfg_text:
        if stock_config:
            raise ConversionError(
                f'{src} saves no config; pass the pre-training config with '
                f'--config.')
        print('no config saved in the checkpoint and no --config: the '
              'backbone keys are not checked against a model')
    else:
        backbone = backbone_from_config(cfg_text, config)
        expected = {PREFIX + k: s
                    for k, s in shapes_of(backbone.state_dict()).items()}
        check_keys(shapes_of(state), expected,
                   f'{type(backbone).__name__} backbone')
        if stock_config:
            state = to_stock(state, backbone, stock_backbone(stock_config))
            meta.update(stock_config=stock_config)
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
    parser.add_argument(
        '--stock-config',
        help='write the backbone for the stock Swin of this config (e.g. '
        'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py); '
        'UMStockSwinTransformer checkpoints only')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        convert(args.src, args.dst, args.config, args.stock_config)
    except ConversionError as err:
        print(f'refused: {err}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
