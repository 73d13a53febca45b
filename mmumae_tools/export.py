"""Export a stock-Swin checkpoint of mmumae to timm and transformers.

The input is a checkpoint whose backbone is mmpretrain's ``SwinTransformer``
layout: a ``UMStockSwinTransformer`` pre-training checkpoint
(``configs/ummae/ummae_stock-swin-*``), a fine-tuned classifier with a stock
``SwinTransformer`` backbone, or the backbone-only output of
``tools/model_converters/ummae_to_backbone.py``. The architecture is read
from the tensors (widths, depths, heads, per-stage windows, patch size), so
no config is needed.

- :func:`export_timm`: a state dict for ``timm``'s ``SwinTransformer``
  (``timm.create_model(name, pretrained=False, **kwargs)``, strict load).
  Bias tables of another window are resized by timm's own
  ``checkpoint_filter_fn``, as timm does when it loads a checkpoint.
  A fine-tuned ``head.fc`` becomes timm's ``head.fc``.
- :func:`export_hf`: a folder with ``config.json`` (``SwinConfig``) and
  ``model.safetensors``, written by ``SwinModel.save_pretrained`` and
  loaded by ``SwinModel.from_pretrained(folder)``. transformers resizes no
  Swin bias table (``from_pretrained`` refuses a table of another size), so
  a table of another window is written as ``ummae_to_backbone.py`` writes
  it for mmpretrain (:func:`mmumae_tools.converters.backbone.resize_table`).

Layout changes (both targets): the query/key/value of ``qkv`` (transformers
splits it), the 2x2 merge order of ``PatchMerging`` (mmpretrain's
``nn.Unfold`` orders the ``4C`` inputs channel-major, timm and transformers
by position: ``reorder_merge``), timm's downsampling at the start of the
next stage, and the last stage's ``norm{i}`` as the final norm.
"""
import argparse
import json
import os.path as osp
import re
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

State = Dict[str, torch.Tensor]
Windows = Union[int, Sequence[int]]
TABLE = 'relative_position_bias_table'
#: (embed_dims, depths, num_heads) -> timm's model name of that size
TIMM_NAMES = {
    (96, (2, 2, 6, 2), (3, 6, 12, 24)): 'swin_tiny_patch4_window7_224',
    (96, (2, 2, 18, 2), (3, 6, 12, 24)): 'swin_small_patch4_window7_224',
    (128, (2, 2, 18, 2), (4, 8, 16, 32)): 'swin_base_patch4_window7_224',
    (192, (2, 2, 18, 2), (6, 12, 24, 48)): 'swin_large_patch4_window7_224',
}
INSTALL = ('install the export extra: pip install -e ".[export]" (or pip '
           'install -r requirements/export.txt)')


class ExportError(ValueError):
    """A checkpoint, geometry or output the export cannot take; the scripts
    print it as one ``error: ...`` line."""


@dataclass
class SwinArch:
    """What a stock Swin checkpoint fixes: widths, depths, heads, the
    window of each stage's bias tables and the classifier, if any."""
    embed_dims: int
    depths: Tuple[int, ...]
    num_heads: Tuple[int, ...]
    windows: Tuple[int, ...]
    patch_size: int
    in_channels: int
    mlp_ratio: float
    qkv_bias: bool
    num_classes: int = 0


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f'{module} is not installed; {INSTALL}.') from None


def read_swin(path: str) -> Tuple[State, State, SwinArch]:
    """Read a stock-Swin checkpoint.

    Returns:
        tuple: The backbone tensors (no prefix; ``mask_token`` and the
        index buffers dropped), the classifier's ``head.fc`` tensors (empty
        for a pre-training or backbone-only file) and the architecture.

    Raises:
        ExportError: When the file is not a checkpoint of a stock Swin.
    """
    from mmumae_tools.converters import ConversionError, load_checkpoint_file
    try:
        ckpt = load_checkpoint_file(path)
    except ConversionError as err:
        raise ExportError(str(err)) from None
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    pre = 'backbone.' if any(k.startswith('backbone.') for k in state) else ''
    if 'model' in ckpt and 'state_dict' not in ckpt:
        raise ExportError(f'{path} stores its weights under "model" (a '
                          f'release checkpoint of the reference code?); '
                          f'convert it with tools/model_converters/'
                          f'official_to_mmumae.py first.')
    if not pre and 'patch_embed.projection.weight' not in state:
        raise ExportError(f'{path} holds no backbone (no key starts with '
                          f'"backbone." or "patch_embed."); pass an mmumae '
                          f'checkpoint of a stock Swin.')
    bb = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)
          and not k.endswith('relative_position_index')
          and k[len(pre):] != 'mask_token'}
    head = {k: state[k] for k in ('head.fc.weight', 'head.fc.bias')
            if k in state}
    arch = swin_arch(bb, path)
    if head:
        arch.num_classes = head['head.fc.weight'].shape[0]
    return bb, head, arch


def swin_arch(state: State, path: str = 'the checkpoint') -> SwinArch:
    """The :class:`SwinArch` of mmpretrain-layout backbone tensors.

    Raises:
        ExportError: For keys of another architecture (the reference
            ``UMSwinTransformer``, an absolute position embedding).
    """
    known = re.compile(
        r'patch_embed\.(projection|norm)\.(weight|bias)|norm\d+\.(weight|'
        r'bias)|stages\.\d+\.downsample\.(norm\.weight|norm\.bias|reduction'
        r'\.weight)|stages\.\d+\.blocks\.\d+\.(norm[12]\.(weight|bias)|attn'
        r'\.w_msa\.(relative_position_bias_table|(qkv|proj)\.(weight|bias))'
        r'|ffn\.layers\.(0\.0|1)\.(weight|bias))')
    other = sorted(k for k in state if not known.fullmatch(k))
    if other:
        raise ExportError(
            f'{path}: {len(other)} backbone keys of no stock Swin (e.g. '
            f'{other[0]}); the export takes UMStockSwinTransformer and '
            f'SwinTransformer checkpoints (configs/ummae/'
            f'ummae_stock-swin-*), not the reference UMSwinTransformer.')
    for key in ('patch_embed.projection.weight',
                'stages.0.blocks.0.ffn.layers.0.0.weight'):
        if key not in state:
            raise ExportError(f'{path} has no backbone tensor {key}; pass a '
                              f'complete checkpoint of a stock Swin.')
    blocks = sorted({tuple(map(int, m.groups())) for m in (
        re.match(r'stages\.(\d+)\.blocks\.(\d+)\.', k) for k in state) if m})
    n = max(s for s, _ in blocks) + 1
    depths = tuple(sum(1 for s, _ in blocks if s == i) for i in range(n))
    tables = [state[f'stages.{i}.blocks.0.attn.w_msa.{TABLE}']
              for i in range(n)]
    proj = state['patch_embed.projection.weight']
    dims = proj.shape[0]
    return SwinArch(
        embed_dims=dims, depths=depths,
        num_heads=tuple(t.shape[1] for t in tables),
        windows=tuple((round(t.shape[0]**.5) + 1) // 2 for t in tables),
        patch_size=proj.shape[-1], in_channels=proj.shape[1],
        mlp_ratio=state['stages.0.blocks.0.ffn.layers.0.0.weight'].shape[0]
        / dims,
        qkv_bias='stages.0.blocks.0.attn.w_msa.qkv.bias' in state)


def reorder_merge(t: torch.Tensor) -> torch.Tensor:
    """``PatchMerging`` inputs from mmpretrain's order (``nn.Unfold``:
    channel, then row and column in the 2x2 block) to timm's and
    transformers' (blocks (0,0), (1,0), (0,1), (1,1) of ``(row, col)``,
    each with all channels), along the last dimension."""
    c = t.shape[-1] // 4
    return t.reshape(*t.shape[:-1], c, 2, 2).transpose(-1, -3).reshape(
        t.shape)


def stage_windows(windows: Windows, n: int) -> Tuple[int, ...]:
    """An int or one window per stage, as a tuple of ``n`` windows."""
    out = (windows, ) * n if isinstance(windows, int) else tuple(windows)
    if len(out) != n or any(int(w) < 1 for w in out):
        raise ExportError(f'window size {windows} does not fit {n} stages: '
                          f'pass one positive int or {n} of them.')
    return tuple(int(w) for w in out)


def stage_maps(img_size: int, arch: SwinArch) -> List[int]:
    """Side of each stage's token map for square ``img_size`` inputs
    (a merge pads an odd map)."""
    side, out = -(-img_size // arch.patch_size), []
    for _ in arch.depths:
        out.append(side)
        side = -(-side // 2)
    return out


def _final_norm(state: State, arch: SwinArch) -> State:
    last = len(arch.depths) - 1
    dims = arch.embed_dims * 2**last
    w, b = state.get(f'norm{last}.weight'), state.get(f'norm{last}.bias')
    if w is None or b is None:
        print(f'norm{last} is not in the checkpoint: the final norm is '
              f'written at LayerNorm initialisation')
        w, b = torch.ones(dims), torch.zeros(dims)
    return {'weight': w, 'bias': b}


def timm_layout(state: State, head: State, arch: SwinArch) -> State:
    """mmpretrain-layout Swin tensors under timm's names, tables at the
    checkpoint's windows (resized afterwards by timm's filter)."""
    out = {k.replace('projection', 'proj'): v for k, v in state.items()
           if k.startswith('patch_embed.')}
    names = {'norm1': 'norm1', 'norm2': 'norm2', 'attn.w_msa': 'attn',
             'attn.w_msa.qkv': 'attn.qkv', 'attn.w_msa.proj': 'attn.proj',
             'ffn.layers.0.0': 'mlp.fc1', 'ffn.layers.1': 'mlp.fc2'}
    for key, v in state.items():
        m = re.fullmatch(r'stages\.(\d+)\.(blocks\.\d+|downsample)\.(.+)', key)
        if not m:
            continue
        i, part, rest = int(m.group(1)), m.group(2), m.group(3)
        if part == 'downsample':  # timm: at the start of the next stage
            out[f'layers.{i + 1}.downsample.{rest}'] = reorder_merge(v)
        else:
            mod, leaf = rest.rsplit('.', 1)
            out[f'layers.{i}.{part}.{names[mod]}.{leaf}'] = v
    out.update({'norm.' + k: v for k, v in _final_norm(state, arch).items()})
    out.update(head)
    return out


def timm_kwargs(arch: SwinArch, img_size: int,
                windows: Windows) -> Tuple[str, dict]:
    """timm's model name and ``create_model`` keyword arguments for
    ``arch`` at ``img_size`` and ``windows``."""
    key = (arch.embed_dims, tuple(arch.depths), tuple(arch.num_heads))
    name = TIMM_NAMES.get(key, 'swin_tiny_patch4_window7_224')
    win = stage_windows(windows, len(arch.depths))
    kwargs = dict(img_size=img_size, num_classes=arch.num_classes,
                  window_size=win[0] if len(set(win)) == 1 else tuple(
                      (w, w) for w in win))
    if key not in TIMM_NAMES:
        kwargs.update(embed_dim=arch.embed_dims, depths=arch.depths,
                      num_heads=arch.num_heads)
    for opt, value, default in (('patch_size', arch.patch_size, 4),
                                ('in_chans', arch.in_channels, 3),
                                ('mlp_ratio', arch.mlp_ratio, 4.),
                                ('qkv_bias', arch.qkv_bias, True)):
        if value != default:
            kwargs[opt] = value
    return name, kwargs


def geometry_notes(arch: SwinArch, img_size: int,
                   windows: Sequence[int]) -> List[str]:
    """Where timm's Swin computes differently from mmpretrain's at this
    geometry (both agree where every stage's map is a multiple of its
    window, or equal to it)."""
    notes = []
    for i, (side, win) in enumerate(zip(stage_maps(img_size, arch),
                                        windows)):
        if side < win:
            notes.append(f'stage {i}: its {side}x{side} map is smaller than '
                         f'window {win}: timm shrinks the window (and its '
                         f'table) to {side}, mmpretrain needs '
                         f'pad_small_map=True and pads the map instead')
        elif side % win and arch.depths[i] > 1:
            notes.append(f'stage {i}: its {side}x{side} map is no multiple '
                         f'of window {win}: timm pads after the cyclic '
                         f'shift, mmpretrain before it')
    return notes


def export_timm(src: str, dst: str, img_size: int = 224,
                window_size: Windows = 7) -> Tuple[str, dict]:
    """Write ``src`` as a state dict of timm's ``SwinTransformer``.

    Args:
        src (str): Stock-Swin checkpoint of mmumae.
        dst (str): Output file: ``.safetensors`` (the model name and
            arguments in its metadata) or any other name (``torch.save``).
        img_size (int): timm's ``img_size``. Defaults to 224.
        window_size (int | Sequence[int]): timm's ``window_size``, one for
            all stages or one per stage. Defaults to 7.

    Returns:
        tuple: The timm model name and the ``create_model`` arguments that
        load the file with ``load_state_dict(..., strict=True)``.

    Raises:
        ExportError: For a bad input, output or geometry, or without timm.
    """
    timm = _require('timm')
    from timm.models.swin_transformer import checkpoint_filter_fn
    _check_output(src, dst, folder=False)
    state, head, arch = read_swin(src)
    name, kwargs = timm_kwargs(arch, img_size, window_size)
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except (AssertionError, ValueError, RuntimeError) as err:
        raise ExportError(f'timm refuses img_size={img_size}, window_size='
                          f'{window_size}: {err}') from None
    out = checkpoint_filter_fn(timm_layout(state, head, arch), model)
    own = model.state_dict()
    _check_keys(out, own, 'timm SwinTransformer')
    model.load_state_dict(out, strict=True)
    resized = [k for k in out if k.endswith(TABLE)
               and out[k].shape != _table_shape(state, k)]
    print(f'{name}: {len(out)} tensors; {len(resized)} bias tables resized '
          f'by timm to the target windows; head: ' +
          (f'{arch.num_classes} classes' if arch.num_classes else 'none'))
    for note in geometry_notes(
            arch, img_size, stage_windows(window_size, len(arch.depths))):
        print('note:', note)
    out = {k: v.contiguous() for k, v in out.items()}
    if dst.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(out, dst, metadata={'format': 'pt', 'timm_model': name,
                                      'timm_kwargs': json.dumps(kwargs)})
    else:
        torch.save(out, dst)
    print(f'saved to {dst}; load with timm.create_model({name!r}, '
          f'pretrained=False, ' +
          ', '.join(f'{k}={v!r}' for k, v in kwargs.items()) + ')')
    return name, kwargs


def _table_shape(state: State, timm_key: str) -> torch.Size:
    i, j = re.match(r'layers\.(\d+)\.blocks\.(\d+)\.', timm_key).groups()
    return state[f'stages.{i}.blocks.{j}.attn.w_msa.{TABLE}'].shape


def hf_layout(state: State, arch: SwinArch, own: State) -> State:
    """mmpretrain-layout Swin tensors under the names of transformers'
    ``SwinModel`` (``own``: its state dict), bias tables resized to
    ``own``'s window."""
    from mmumae_tools.converters.backbone import resize_table
    pe = 'embeddings.patch_embeddings.projection'
    out = {f'{pe}.weight': state['patch_embed.projection.weight'],
           f'{pe}.bias': state['patch_embed.projection.bias'],
           'embeddings.norm.weight': state['patch_embed.norm.weight'],
           'embeddings.norm.bias': state['patch_embed.norm.bias']}
    out.update({'layernorm.' + k: v
                for k, v in _final_norm(state, arch).items()})
    names = {'norm1': 'layernorm_before', 'norm2': 'layernorm_after',
             'ffn.layers.0.0': 'intermediate.dense',
             'ffn.layers.1': 'output.dense',
             'attn.w_msa.proj': 'attention.output.dense'}
    for key, v in state.items():
        m = re.fullmatch(r'stages\.(\d+)\.(blocks\.\d+|downsample)\.(.+)',
                         key)
        if not m:
            continue
        to = f'encoder.layers.{m.group(1)}.{m.group(2)}'
        mod, leaf = m.group(3).rsplit('.', 1)
        if m.group(2) == 'downsample':
            out[f'{to}.{mod}.{leaf}'] = reorder_merge(v)
        elif leaf == TABLE:
            out[f'{to}.attention.self.{TABLE}'] = v
        elif mod == 'attn.w_msa.qkv':
            for name, part in zip(('query', 'key', 'value'), v.chunk(3)):
                out[f'{to}.attention.self.{name}.{leaf}'] = part
        else:
            out[f'{to}.{names[mod]}.{leaf}'] = v
    for k, v in out.items():
        if k.endswith(TABLE) and k in own and own[k].shape != v.shape:
            out[k] = resize_table(v, round(own[k].shape[0]**.5))
    # persistent buffers of SwinModel: constants of the window
    out.update({k: v for k, v in own.items()
                if k.endswith('relative_position_index')})
    return out


def export_hf(src: str, dst: str, img_size: int = 224,
              window_size: int = 7) -> object:
    """Write ``src`` as a transformers ``SwinModel`` folder.

    Args:
        src (str): Stock-Swin checkpoint of mmumae.
        dst (str): Output folder (created; ``config.json`` and
            ``model.safetensors`` are written into it).
        img_size (int): ``SwinConfig.image_size``. Defaults to 224.
        window_size (int): ``SwinConfig.window_size`` (one for all stages).
            Defaults to 7.

    Returns:
        SwinConfig: The saved configuration.

    Raises:
        ExportError: For a bad input, output or geometry, or without
            transformers.
    """
    _require('transformers')
    from transformers import SwinConfig, SwinModel
    _check_output(src, dst, folder=True)
    state, head, arch = read_swin(src)
    if not isinstance(window_size, int):
        raise ExportError(f'transformers\' SwinConfig has one window for '
                          f'all stages, not {window_size}; pass one int.')
    maps = stage_maps(img_size, arch)
    if min(maps) < window_size:
        i = maps.index(min(maps))
        raise ExportError(
            f'at {img_size} px, stage {i} has a {maps[i]}x{maps[i]} map, '
            f'smaller than window {window_size}: transformers\' Swin '
            f'shrinks the window there but not its bias table, and stops; '
            f'pass --window-size <= {min(maps)} or --img-size >= '
            f'{window_size * arch.patch_size * 2**(len(maps) - 1)}.')
    config = SwinConfig(
        image_size=img_size, patch_size=arch.patch_size,
        num_channels=arch.in_channels, embed_dim=arch.embed_dims,
        depths=list(arch.depths), num_heads=list(arch.num_heads),
        window_size=window_size, mlp_ratio=arch.mlp_ratio,
        qkv_bias=arch.qkv_bias, layer_norm_eps=1e-5)
    model = SwinModel(config)
    own = model.state_dict()
    out = hf_layout(state, arch, own)
    _check_keys(out, own, f'transformers SwinModel (transformers '
                f'{__import__("transformers").__version__})')
    model.load_state_dict(out, strict=True)
    resized = sum(1 for i, w in enumerate(arch.windows) if w != window_size)
    print(f'SwinModel: {len(out)} tensors; bias tables of {resized} of '
          f'{len(arch.windows)} stages resized to window {window_size}; '
          + (f'the {arch.num_classes}-class head is not part of SwinModel '
             f'and is dropped' if head else 'no head'))
    model.save_pretrained(dst)
    print(f'saved to {dst}; load with SwinModel.from_pretrained({dst!r})')
    return config


def _check_output(src: str, dst: str, folder: bool) -> None:
    if osp.exists(dst) and osp.exists(src) and osp.samefile(src, dst):
        raise ExportError(f'the output {dst} is the input; name another.')
    if folder and osp.isfile(dst):
        raise ExportError(f'the output {dst} is a file; name a folder '
                          f'(it is created).')
    if not folder and osp.isdir(dst):
        raise ExportError(f'the output {dst} is a directory; name a file.')
    parent = osp.dirname(osp.abspath(dst))
    if not folder and not osp.isdir(parent):
        raise ExportError(f'cannot write {dst}: the directory {parent} '
                          f'does not exist; create it first.')


def _check_keys(got: State, own: State, what: str) -> None:
    missing = sorted(set(own) - set(got))
    extra = sorted(set(got) - set(own))
    shapes = sorted(k for k in set(got) & set(own)
                    if got[k].shape != own[k].shape)
    if missing or extra or shapes:
        first = (missing or extra or shapes)[0]
        raise ExportError(
            f'the {what} does not take these tensors: {len(missing)} '
            f'missing, {len(extra)} unexpected, {len(shapes)} of another '
            f'shape (e.g. {first}); {INSTALL} for the tested versions.')


def export_cli(export: Callable, description: str, dst_help: str,
               img_size_help: str, argv: Optional[List[str]] = None,
               **window_arg) -> None:
    """The command line of ``tools/model_converters/ummae_to_{timm,hf}.py``:
    ``src dst [--img-size N] [--window-size ...]`` (``window_arg``: the
    ``add_argument`` keywords of ``--window-size``), then
    ``export(src, dst, img_size, window_size)``; an :class:`ExportError`
    exits with status 1 and one ``error: ...`` line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='input mmumae checkpoint')
    parser.add_argument('dst', help=dst_help)
    parser.add_argument('--img-size', type=int, default=224,
                        help=img_size_help)
    parser.add_argument('--window-size', default=7, **window_arg)
    args = parser.parse_args(argv)
    try:
        export(args.src, args.dst, args.img_size, args.window_size)
    except ExportError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)


__all__ = ['ExportError', 'export_cli', 'SwinArch', 'export_hf', 'export_timm',
           'read_swin', 'reorder_merge', 'swin_arch', 'timm_kwargs',
           'timm_layout', 'hf_layout', 'stage_maps', 'geometry_notes']
