"""Checkpoint converters (``tools/model_converters/README.md``): an mmumae
checkpoint to a backbone-only one (:mod:`.backbone`), a release checkpoint
of the reference code to mmumae (:mod:`.official`), and what they share:
reading, key checks, atomic writing and the ``refused: ...`` line."""
import argparse
import importlib
import os
import os.path as osp
import shutil
import sys
from collections import Counter
from typing import Callable, Dict, Iterable, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmumae  # noqa: F401  (registers the models)
from runsafe import RunError, read_checkpoint

Shapes = Dict[str, Tuple[int, ...]]
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class ConversionError(ValueError):
    """A conversion that would drop or leave unset backbone weights, or a
    bad input or output; printed as one ``refused: ...`` line."""


def load_checkpoint_file(path: str) -> dict:
    """A checkpoint read on the CPU by :func:`runsafe.read_checkpoint`
    (weights only, plus the ``argparse.Namespace`` of arguments release
    files of the reference code hold); its one-line error a
    :class:`ConversionError`."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return read_checkpoint(path, map_location='cpu')
    except RunError as err:
        raise ConversionError(str(err)) from None


def check_paths(src: str, dst: str) -> None:
    """Refuse an output that is the input (it would be replaced) or a
    directory."""
    if osp.realpath(src) == osp.realpath(dst) or (
            osp.exists(src) and osp.exists(dst) and osp.samefile(src, dst)):
        raise ConversionError(
            f'the output {dst} is the input file; the conversion would '
            f'replace it. Name another output file.')
    if osp.isdir(dst):
        raise ConversionError(f'the output {dst} is a directory; name the '
                              f'output file.')


def shapes_of(state: Dict[str, torch.Tensor]) -> Shapes:
    """Key -> shape of a state dict."""
    return {k: tuple(v.shape) for k, v in state.items()}


def prefix_counts(keys: Iterable[str]) -> str:
    """``'neck.*: 12, head.*: 0'``-style summary of keys by first part."""
    counts = Counter(k.split('.', 1)[0] for k in keys)
    return ', '.join(f'{p}.*: {n}' for p, n in sorted(counts.items()))


def check_keys(got: Shapes, expected: Shapes, what: str,
               allow_missing: Iterable[str] = ()) -> None:
    """Print missing, unexpected and mis-shaped keys of ``got`` against the
    target's ``expected``; raise a :class:`ConversionError` if any (keys of
    ``allow_missing`` may be absent: they keep their initialisation)."""
    missing = sorted(set(expected) - set(got) - set(allow_missing))
    unexpected = sorted(k for k in got if k not in expected)
    shapes = sorted(k for k in got if k in expected and got[k] != expected[k])
    print(f'missing keys ({len(missing)}): {missing}\nunexpected keys '
          f'({len(unexpected)}): {unexpected}' + ('\nshape mismatches: ' + (
              ', '.join(f'{k} {got[k]} vs {expected[k]}' for k in shapes))
              if shapes else ''))
    problems = [
        f'{len(missing)} {what} keys would stay at their initialisation '
        f'(e.g. {missing[0]})' if missing else '',
        f'{len(unexpected)} keys have no place in the {what} (e.g. '
        f'{unexpected[0]})' if unexpected else '',
        f'{len(shapes)} keys have another shape (e.g. {shapes[0]}: '
        f'{got[shapes[0]]} vs {expected[shapes[0]]})' if shapes else ''
    ]
    if any(problems):
        raise ConversionError('; '.join(p for p in problems if p) +
                              '. Check that the input is the model you '
                              'named and is complete.')


def build_backbone(cfg: Config, name: str) -> torch.nn.Module:
    """Build (not initialise) the backbone of ``cfg`` (called ``name`` in
    errors) in its scope: mmpretrain (the default), mmdet or mmseg."""
    scope = cfg.get('default_scope') or 'mmpretrain'
    if scope not in ('mmpretrain', 'mmdet', 'mmseg'):
        raise ConversionError(f'{name}: scope {scope!r} is not one of '
                              f'mmpretrain, mmdet, mmseg.')
    importlib.import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=False)
    backbone = dict(cfg.model.backbone)
    backbone.pop('init_cfg', None)
    backbone.pop('pretrained', None)
    with DefaultScope.overwrite_default_scope(scope):
        return importlib.import_module(f'{scope}.registry').MODELS.build(
            backbone)


def save_checkpoint_file(state: Dict[str, torch.Tensor], meta: dict,
                         path: str) -> None:
    """Write ``{'meta': meta, 'state_dict': state}`` (mmengine's layout)
    atomically (a hidden temporary file beside ``path``, renamed over it
    when complete); a :class:`ConversionError` naming the file and the free
    space when it cannot be written."""
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise ConversionError(f'cannot write {path}: the directory {folder} '
                              f'does not exist; create it first.')
    tmp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            torch.save(dict(meta=meta, state_dict=state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        # torch.save reports a failed write of its zip container as a
        # RuntimeError ("unexpected pos ..."), other writes as OSError
        reason = getattr(err, 'strerror', None) or \
            f'the write stopped ({str(err)[:120]})'
        raise ConversionError(
            f'cannot write {path}: {reason}; '
            f'{shutil.disk_usage(folder).free / 2**20:.0f} MiB free in '
            f'{folder}; nothing was written: free some space or write '
            f'elsewhere.') from None
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    print(f'saved {len(state)} tensors to {path}')


def run_or_refuse(convert: Callable, *args) -> None:
    """``convert(*args)``; a :class:`ConversionError` ends the process
    with one ``refused: ...`` line and exit status 1."""
    try:
        convert(*args)
    except ConversionError as err:
        print(f'refused: {err}', file=sys.stderr)
        sys.exit(1)
