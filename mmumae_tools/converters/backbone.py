"""mmumae checkpoint -> backbone-only checkpoint (``backbone.*``, prefix
kept), checked against the saved config's backbone; :func:`to_stock` writes
a stock Swin's exact keys (``tools/model_converters/README.md``)."""
import os.path as osp
import re
from typing import Dict, Optional

import torch
from mmengine.config import Config

from . import (ConversionError, build_backbone, check_keys, check_paths,
               load_checkpoint_file, prefix_counts, save_checkpoint_file,
               shapes_of)

State = Dict[str, torch.Tensor]
PREFIX = 'backbone.'
TABLE = 'relative_position_bias_table'
INDEX = 'relative_position_index'
NORM = re.compile(r'norm\d+\.(weight|bias)')


def backbone_state(ckpt: dict, path: str) -> State:
    """The ``backbone.*`` tensors of an mmumae checkpoint, prefix kept."""
    if 'state_dict' not in ckpt and 'model' in ckpt:
        raise ConversionError(
            f'{path} stores its weights under "model" (a release '
            f'checkpoint of the reference code?); convert it with '
            f'tools/model_converters/official_to_mmumae.py.')
    state = ckpt.get('state_dict', ckpt)
    kept = {k: v for k, v in state.items() if k.startswith(PREFIX)}
    if not kept:
        raise ConversionError(
            f'no key of {path} starts with {PREFIX!r} (keys look like: '
            f'{", ".join(list(state)[:3])}); pass a checkpoint of an mmumae '
            f'model with a backbone.')
    dropped = [k for k in state if not k.startswith(PREFIX)]
    print(f'kept {len(kept)} backbone tensors; dropped '
          f'{len(dropped)} ({prefix_counts(dropped) or "none"})')
    return kept


def stock_backbone(config: str) -> torch.nn.Module:
    """The backbone of a stock config (``mmdet::...``, ``mmseg::...``,
    ``mmpretrain::...`` or a file), built in its scope."""
    from mmengine.hub import get_config
    try:
        cfg = get_config(config) if '::' in config else Config.fromfile(
            config)
    except (OSError, ValueError, ImportError) as err:
        raise ConversionError(
            f'--stock-config {config}: no such config ({err}); name a config '
            f'file or a stock one, e.g. mmdet::swin/mask-rcnn_swin-t-p4-w7_'
            f'fpn_1x_coco.py') from None
    return build_backbone(cfg, config)


def window_backbone(source: torch.nn.Module,
                    window_size: int) -> torch.nn.Module:
    """mmpretrain's own ``SwinTransformer`` of ``source``'s architecture
    at ``window_size`` (``--window-size``; docs/install.md)."""
    from mmpretrain.models.backbones import SwinTransformer
    proj = source.patch_embed.projection
    return SwinTransformer(
        arch=dict(embed_dims=source.embed_dims, depths=source.depths,
                  num_heads=source.num_heads),
        in_channels=proj.in_channels, patch_size=proj.kernel_size[0],
        window_size=window_size, out_indices=source.out_indices)


def resize_table(table: torch.Tensor, side: int) -> torch.Tensor:
    """A ``((2W-1)**2, heads)`` bias table for a window of another size:
    the centre of the table for a smaller window, a bicubic resize (as
    mmdet's and mmseg's Swin loaders do; mmpretrain's needs SciPy's removed
    ``interp2d``) for a larger one."""
    src, heads = int(round(table.shape[0]**.5)), table.shape[1]
    grid = table.view(src, src, heads)
    if side <= src:
        lo = (src - side) // 2
        return grid[lo:lo + side, lo:lo + side].reshape(side * side, heads)
    grid = torch.nn.functional.interpolate(
        grid.permute(2, 0, 1)[None].float(), size=(side, side),
        mode='bicubic')[0].to(table.dtype)
    return grid.permute(1, 2, 0).reshape(side * side, heads)


def to_stock(state: State, source: torch.nn.Module,
             target: torch.nn.Module) -> State:
    """The ``backbone.*`` state of a ``UMStockSwinTransformer`` ``source``
    in the layout of the stock Swin ``target``: names kept, ``mask_token``
    dropped, bias tables of another window resized (:func:`resize_table`),
    the target's index buffers, and output norms the pre-training did not
    have at LayerNorm's initialisation."""
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
        elif have is None and NORM.fullmatch(key):
            out[key] = torch.ones_like(want) if key.endswith('weight') \
                else torch.zeros_like(want)
            fresh.append(key)
        elif have is not None:  # a missing one: reported by check_keys
            if key.endswith(TABLE) and have.shape != want.shape:
                have = resize_table(have, int(round(want.shape[0]**.5)))
                resized.append(key)
            out[key] = have
    dropped = sorted(set(src) - set(own))
    unplaced = [k for k in dropped
                if k != 'mask_token' and not NORM.fullmatch(k)]
    print(f'resized to the target window: {resized}; not pre-trained, '
          f'written at LayerNorm initialisation: {fresh}; dropped (no place '
          f'in the stock Swin): {dropped}')
    if unplaced:
        raise ConversionError(f'{len(unplaced)} backbone keys have no place '
                              f'in the stock Swin (e.g. {unplaced[0]}).')
    check_keys(shapes_of(out), shapes_of(own),
               f'stock {type(target).__name__} backbone')
    return {PREFIX + k: v.contiguous() for k, v in out.items()}


def convert(src: str, dst: str, config: Optional[str] = None,
            stock_config: Optional[str] = None,
            window_size: Optional[int] = None) -> None:
    """Write the backbone of ``src`` to ``dst``, its keys checked against
    the backbone of ``config`` (default: the config saved in ``src``); with
    ``stock_config``, in the layout of that stock Swin (:func:`to_stock`);
    with ``window_size``, of mmpretrain's own Swin at that window.
    """
    check_paths(src, dst)
    stock = stock_backbone(stock_config) if stock_config else None
    ckpt = load_checkpoint_file(src)
    state = backbone_state(ckpt, src)
    meta = dict(ckpt.get('meta') or {})
    cfg_text = meta.get('cfg')
    if config is None and not cfg_text:
        if stock_config or window_size:
            raise ConversionError(
                f'{src} saves no config; pass the pre-training config with '
                f'--config.')
        print('no config saved in the checkpoint and no --config: the '
              'backbone keys are not checked against a model')
    else:
        backbone = build_backbone(Config.fromfile(config) if config else
                                  Config.fromstring(cfg_text, '.py'),
                                  config or src)
        expected = {PREFIX + k: s
                    for k, s in shapes_of(backbone.state_dict()).items()}
        check_keys(shapes_of(state), expected,
                   f'{type(backbone).__name__} backbone')
        if stock_config or window_size:
            state = to_stock(state, backbone, window_backbone(
                backbone, window_size) if stock is None else stock)
            meta.update(dict(stock_config=stock_config) if stock_config
                        else dict(window_size=window_size))
    meta.update(converted_from=osp.abspath(src),
                converter='tools/model_converters/ummae_to_backbone.py')
    save_checkpoint_file(state, meta, dst)
