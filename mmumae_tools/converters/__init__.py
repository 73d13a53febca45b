"""Checkpoint converters (``tools/model_converters/README.md``): an mmumae
checkpoint to a backbone-only one (:mod:`.backbone`), a release checkpoint
of the reference code to mmumae (:mod:`.official`), and what they share:
reading, key checks, atomic writing and the ``refused: ...`` line."""
import argparse
import errno
import os
import os.path as osp
import shutil
import sys
import tempfile
from collections import Counter
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
from mmengine.config import Config

import mmumae  # noqa: F401  (registers the models)
from runsafe import RunError, read_checkpoint

Shapes = Dict[str, Tuple[int, ...]]
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class ConversionError(ValueError):
    """A conversion that would drop or leave unset backbone weights, or a
    bad input or output; printed as one ``refused: ...`` line."""


def load_checkpoint_file(path: str) -> dict:
    """Load a checkpoint on the CPU, weights-only, with runsafe's reader
    (:func:`runsafe.read_checkpoint`: ``checkpoint not found: PATH``, ``not
    a checkpoint file: PATH (reason)``), its error a
    :class:`ConversionError`. Release files of the reference code may also
    hold its ``argparse.Namespace`` of arguments, a plain attribute
    container, allowed here."""
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
    allowed = set(allow_missing)
    missing = sorted(k for k in expected if k not in got and k not in allowed)
    unexpected = sorted(k for k in got if k not in expected)
    shapes = sorted(k for k in got if k in expected and got[k] != expected[k])
    print(f'missing keys ({len(missing)}): {missing}')
    print(f'unexpected keys ({len(unexpected)}): {unexpected}')
    if shapes:
        print('shape mismatches: ' + ', '.join(
            f'{k} {got[k]} vs {expected[k]}' for k in shapes))
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


def backbone_from_config(cfg_text: Optional[str],
                         path: Optional[str] = None) -> torch.nn.Module:
    """Build (not initialise) the backbone of a config file, else text."""
    cfg = Config.fromfile(path) if path is not None else Config.fromstring(
        cfg_text, file_format='.py')
    from mmpretrain.registry import MODELS
    backbone_cfg = dict(cfg.model.backbone)
    backbone_cfg.pop('init_cfg', None)
    return MODELS.build(backbone_cfg)


def save_checkpoint_file(state: Dict[str, torch.Tensor], meta: dict,
                         path: str) -> None:
    """Write ``{'meta': meta, 'state_dict': state}`` (mmengine's layout)
    atomically: to a hidden temporary file in the output's directory,
    renamed over ``path`` only when complete, and removed on any error.

    Raises:
        ConversionError: When the file cannot be written (names the file
            and, for a full disk, the free space).
    """
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise ConversionError(f'cannot write {path}: the directory {folder} '
                              f'does not exist; create it first.')
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # as a plain open() would create it
        with os.fdopen(fd, 'wb') as f:
            torch.save(dict(meta=meta, state_dict=state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if osp.exists(tmp):
            os.remove(tmp)
        # torch.save reports a failed write of its zip container as a
        # RuntimeError ("unexpected pos ..."), other writes as OSError
        if not isinstance(err, (OSError, RuntimeError)):
            raise
        free = shutil.disk_usage(folder).free / 2**20
        if getattr(err, 'errno', None) == errno.ENOSPC:
            raise ConversionError(
                f'cannot write {path}: no space left on the device '
                f'({free:.0f} MiB free in {folder}); free some space or '
                f'write elsewhere. Nothing was written.') from None
        reason = err.strerror if isinstance(err, OSError) and \
            err.strerror else f'the write stopped ({str(err)[:120]})'
        raise ConversionError(
            f'cannot write {path}: {reason}; {free:.0f} MiB free in '
            f'{folder}; nothing was written.') from None
    print(f'saved {len(state)} tensors to {path}')


def run_or_refuse(convert: Callable, *args) -> None:
    """``convert(*args)``; a :class:`ConversionError` ends the process
    with one ``refused: ...`` line and exit status 1."""
    try:
        convert(*args)
    except ConversionError as err:
        print(f'refused: {err}', file=sys.stderr)
        sys.exit(1)
