"""Release checkpoint of the reference UM-MAE code -> mmumae checkpoint of
the matching config's model (:data:`TARGETS`), every key placed and filled
or nothing written; ``tools/model_converters/README.md`` explains each
convention."""
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config

from . import (REPO, ConversionError, check_keys, check_paths,
               load_checkpoint_file, prefix_counts, save_checkpoint_file,
               shapes_of)

State = Dict[str, torch.Tensor]
#: (model, kind) -> the mmumae config of the target model.
TARGETS = {
    ('swin-tiny', 'pretrain'):
    'configs/ummae/ummae_swin-tiny-w8_8xb512-amp-coslr-200e_in1k-256px.py',
    ('swin-large', 'pretrain'):
    'configs/ummae/ummae_swin-large-w8_8xb512-amp-coslr-800e_in1k-256px.py',
    ('pvt-small', 'pretrain'):
    'configs/ummae/ummae_pvt-small_8xb512-amp-coslr-200e_in1k-256px.py',
    ('swin-tiny', 'finetune'):
    'configs/finetune/swin-tiny-w16_ummae-pre_8xb128-coslr-100e_in1k-256px.py',
    ('pvt-small', 'finetune'):
    'configs/finetune/pvt-small_ummae-pre_8xb128-coslr-100e_in1k-256px.py',
}
MODELS = ('swin-tiny', 'swin-large', 'pvt-small')
KINDS = ('pretrain', 'finetune')
#: (family, patch-embedding width) -> model.
SIZES = {('swin', 96): 'swin-tiny', ('swin', 192): 'swin-large',
         ('pvt', 64): 'pvt-small'}

#: Official module names inside a block / decoder block -> mmumae's.
BLOCK_RENAMES = (('attn.posmlp.', 'attn.rpe_mlp.'),
                 ('mlp.fc1.', 'ffn.layers.0.0.'),
                 ('mlp.fc2.', 'ffn.layers.1.'))
DECODER_RENAMES = (('norm1.', 'ln1.'), ('norm2.', 'ln2.')) + BLOCK_RENAMES[1:]
#: Official top-level keys -> mmumae's, per family (decoder: both).
STEMS = dict(
    swin={'vis_mask_token': 'backbone.mask_token',
          'patch_embed.proj.': 'backbone.patch_embed.',
          'patch_embed.norm.': 'backbone.patch_norm.'},
    pvt={'vis_mask_token': 'backbone.mask_token',
         'pos_embed': 'backbone.pos_embed',
         'patch_embed.proj.': 'backbone.stages.0.patch_embed.'})
DECODER_TOP = ('mask_token', 'decoder_pos_embed', 'decoder_embed.',
               'decoder_norm.', 'decoder_pred.')
#: Official keys a conversion drops on purpose.
DROPPED = ('fc_norm.', )


def detect(state: State) -> Tuple[str, str]:
    """(model, kind) of an official state dict, from its keys and shapes;
    a :class:`ConversionError` for another model."""
    if 'blocks.0.attn.posmlp.0.weight' in state:
        family = 'swin'
    elif 'blocks.0.attn.sr.weight' in state:
        family = 'pvt'
    else:
        raise ConversionError(
            f'not a UM-MAE Swin or PVT state dict (keys look like: '
            f'{", ".join(list(state)[:3])}); pass a release checkpoint of '
            f'the reference code.')
    proj = state.get('patch_embed.proj.weight')
    width = None if proj is None else proj.shape[0]
    if (family, width) not in SIZES:
        raise ConversionError(
            f'a {family} state dict with patch-embedding width {width}: '
            f'only {", ".join(MODELS)} are supported.')
    kind = 'pretrain' if 'decoder_embed.weight' in state else 'finetune'
    return SIZES[family, width], kind


def block_index(depths: List[int], k: int) -> Tuple[int, int]:
    """Official flat block index -> (stage, block in stage)."""
    for i, d in enumerate(depths):
        if k < d:
            return i, k
        k -= d
    raise ConversionError(f'block {k + sum(depths)} is beyond the '
                          f'{sum(depths)} blocks of depths {depths}.')


def _rename(key: str, pairs) -> Optional[str]:
    """``key`` with the first matching prefix of ``pairs`` (old, new)
    replaced (an old name without a dot: the whole key); else None."""
    for old, new in pairs:
        if key == old or (old.endswith('.') and key.startswith(old)):
            return new + key[len(old):]
    return None


def rename(key: str, family: str, depths: List[int]) -> Optional[str]:
    """mmumae name of an official key; None for a key with no place."""
    new = _rename(key, list(STEMS[family].items()) + [
        ('norm.', f'backbone.norm{len(depths) - 1}.'), ('head.', 'head.fc.')
    ] + [(top, 'neck.' + top) for top in DECODER_TOP])
    m = re.match(r'(decoder_)?blocks\.(\d+)\.(downsample\.)?(.+)$', key)
    if new or not m:
        return new
    if m[1]:
        return (f'neck.decoder_blocks.{m[2]}.' +
                (_rename(m[4], DECODER_RENAMES) or m[4]))
    i, j = block_index(depths, int(m[2]))
    if m[3] and family == 'swin':
        return f'backbone.stages.{i}.downsample.' + (
            _rename(m[4], [('proj.', 'reduction.')]) or m[4])
    if m[3]:
        return f'backbone.stages.{i}.patch_embed.' + (
            _rename(m[4], [('proj.', '')]) or m[4])
    return f'backbone.stages.{i}.blocks.{j}.' + (
        _rename(m[4], BLOCK_RENAMES) or m[4])


def official_state(ckpt: dict, path: str) -> State:
    """The official state dict of a release file (under ``model``)."""
    if 'state_dict' in ckpt and 'model' not in ckpt:
        raise ConversionError(
            f'{path} looks like an mmengine checkpoint (state_dict); it is '
            f'already mmumae\'s or another library\'s, not a release file.')
    state = ckpt.get('model', ckpt)
    if not isinstance(state, dict) or not all(
            torch.is_tensor(v) for v in state.values()):
        raise ConversionError(f'{path}: "model" is not a state dict of '
                              f'tensors; pass a release checkpoint.')
    return state


def _check_pvt_pos_embed(pe: torch.Tensor) -> None:
    """A pre-training ``pos_embed`` must be the fixed table mmumae uses."""
    from mmumae.models.utils.pos_embed import sincos_2d_colfirst
    side = int(round(pe.shape[1]**.5))
    table = sincos_2d_colfirst(side, side, pe.shape[2])[None]
    err = (pe.float() - table).abs().max().item()
    if err > 1e-4:
        raise ConversionError(
            f'pos_embed differs from the column-first sin-cos table by '
            f'{err:.3g}: mmumae pre-trains with the fixed table and would '
            f'lose it; convert with --kind finetune to keep it learnable.')


def convert_state(state: State, model: str, kind: str,
                  depths: List[int]) -> State:
    """An official state dict under mmumae's names; a
    :class:`ConversionError` for a key with no place in mmumae."""
    family = model.split('-')[0]
    out, unplaced, dropped = {}, [], []
    for key, value in state.items():
        if kind == 'pretrain' and key == 'pos_embed' and family == 'pvt':
            _check_pvt_pos_embed(value)  # the fixed table: not stored
            dropped.append(key)
        elif key.startswith(DROPPED):
            dropped.append(key)
        elif (new := rename(key, family, depths)) is None:
            unplaced.append(key)
        else:
            out[new] = value
    print(f'renamed {len(out)} tensors; dropped on purpose: {dropped}')
    if unplaced:
        raise ConversionError(
            f'{len(unplaced)} keys have no place in mmumae '
            f'({prefix_counts(unplaced)}, e.g. {unplaced[0]}); is it a '
            f'{model} {kind} checkpoint?')
    return out


def file_classes(state: State, asked: Optional[int] = None) -> Optional[int]:
    """Class count of a fine-tuned file (rows of ``head.weight``; None
    without a head), which ``asked`` (``--num-classes``) must equal."""
    head = state.get('head.weight')
    found = None if head is None else int(head.shape[0])
    if asked is not None and asked != found:
        raise ConversionError(
            f'--num-classes {asked} was given, but the file has no '
            f'classifier head (head.weight); drop the option.' if head is None
            else f'the file\'s classifier head has {found} classes, not the '
            f'{asked} of --num-classes; pass --num-classes {found} (or leave '
            f'it out).')
    return found


def target_config(model: str, kind: str,
                  num_classes: Optional[int] = None) -> Config:
    """The config of the mmumae model a conversion targets; a fine-tuned
    classifier gets ``num_classes`` classes when given."""
    if (model, kind) not in TARGETS:
        raise ConversionError(
            f'no mmumae target for a {model} {kind} checkpoint; supported: '
            f'{sorted(TARGETS)}.')
    cfg = Config.fromfile(osp.join(REPO, TARGETS[model, kind]))
    if kind == 'pretrain':
        cfg.model.neck.pos_order = 'reference'
    elif num_classes is not None:
        cfg.model.head.num_classes = num_classes
    return cfg


def fit_to_target(out: State, target: torch.nn.Module, kind: str) -> State:
    """Adapt shapes the two codes store differently; check every key."""
    own = target.state_dict()
    want, token = own['backbone.mask_token'], out.get('backbone.mask_token')
    if token is not None:
        if token.numel() != want.numel():
            raise ConversionError(
                f'vis_mask_token {tuple(token.shape)} does not fit '
                f'mask_token {tuple(want.shape)}: wrong model?')
        out['backbone.mask_token'] = token.reshape(want.shape)
    elif kind == 'finetune':
        out['backbone.mask_token'] = torch.zeros_like(want)
        print('backbone.mask_token: none in a fine-tuned file, written as '
              'zeros (unused without a mask)')
    norms = [k for k in own if re.match(r'backbone\.norm\d+\.', k)]
    check_keys(shapes_of(out), shapes_of(own), 'mmumae model',
               allow_missing=norms if kind == 'finetune' else ())
    return out


def convert(src: str, dst: str, model: Optional[str] = None,
            kind: Optional[str] = None,
            num_classes: Optional[int] = None) -> State:
    """Convert the release file ``src`` into an mmumae checkpoint ``dst``
    and return its state dict. ``model`` (:data:`MODELS`) and ``kind``
    (:data:`KINDS`) are detected, and checked when given; ``num_classes``
    of a fine-tuned classifier, when given, must be the file's."""
    check_paths(src, dst)
    state = official_state(load_checkpoint_file(src), src)
    found = detect(state)
    print(f'detected: {found[0]} {found[1]} ({len(state)} tensors)')
    if (model or found[0], kind or found[1]) != found:
        raise ConversionError(
            f'{src} holds a {found[0]} {found[1]} checkpoint, not the '
            f'{model or found[0]} {kind or found[1]} asked for.')
    model, kind = found
    classes = file_classes(state, num_classes)
    print(f'classifier head: {classes} classes' if classes else 'no head')
    cfg = target_config(model, kind, classes)
    from mmpretrain.registry import MODELS as REGISTRY
    cfg.model.backbone.pop('init_cfg', None)
    target = REGISTRY.build(cfg.model)
    out = convert_state(state, model, kind, list(target.backbone.depths))
    out = fit_to_target(out, target, kind)
    save_checkpoint_file(out, dict(
        cfg=cfg.pretty_text, converted_from=osp.abspath(src),
        converter='tools/model_converters/official_to_mmumae.py',
        official_model=f'{model} {kind}'), dst)
    return out
