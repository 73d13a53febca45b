"""Reading checkpoints with clear errors, and checking that they fit.

* :func:`read_checkpoint` says ``not a checkpoint file: PATH (reason)`` for
  anything that is not a torch file holding weights (random bytes, text, a
  0-byte or truncated file, a directory), instead of torch's ``KeyError:
  101`` or its advice to turn ``weights_only`` off.
* :func:`state_dict_mismatch` compares a checkpoint's tensors with a model's
  (missing, unexpected and differently shaped keys); :func:`mismatch_text`
  lists them for an error message.
* :func:`resume_candidates` lists the checkpoints of a work dir, newest
  first, for resuming with a fall-back when the newest is damaged.

Importing this module makes :func:`read_checkpoint` mmengine's loader of
local files (``CheckpointLoader.register_scheme``), so ``init_cfg``,
``load_from``, ``--resume`` and ``tools/test.py`` all read through it.
"""
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.nn as nn
from mmengine.runner import CheckpointLoader, find_latest_checkpoint

from .safe_globals import checkpoint_safe_globals
from .errors import RunError

__all__ = [
    'CheckpointMismatch', 'read_checkpoint',
    'state_dict_of', 'state_dict_mismatch', 'mismatch_text',
    'resume_candidates', 'CKPT_NAME'
]

# The first bytes of a file written by torch.save(...,
# _use_new_zipfile_serialization=False): pickle protocol 2, then torch's
# magic number as a long.
_LEGACY_MAGIC = b'\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.'
# Names mmengine's CheckpointHook gives its checkpoints (filename_tmpl).
CKPT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')
# How many keys of each kind an error message names.
_SHOWN_KEYS = 8


class CheckpointMismatch(NamedTuple):
    """How a checkpoint's tensors differ from a model's.

    Attributes:
        missing (list[str]): Model keys the checkpoint lacks.
        unexpected (list[str]): Checkpoint keys the model lacks.
        shapes (list[str]): ``key: checkpoint shape vs model shape``.
        num_model_keys (int): Number of tensors in the model.
    """
    missing: List[str]
    unexpected: List[str]
    shapes: List[str]
    num_model_keys: int

    @property
    def count(self) -> int:
        """Number of mismatched keys."""
        return len(self.missing) + len(self.unexpected) + len(self.shapes)


def _torch_format(path: str) -> Optional[str]:
    """``'zip'`` or ``'legacy'`` for the two torch.save formats, else None."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        return 'zip' if any(n.endswith('data.pkl') for n in names) else None
    with open(path, 'rb') as f:
        head = f.read(len(_LEGACY_MAGIC))
    return 'legacy' if head == _LEGACY_MAGIC else None


def read_checkpoint(path: str, map_location: str = 'cpu') -> dict:
    """Load a local checkpoint with torch's weights-only unpickler.

    The one reader of checkpoint files of runs that use runsafe: ``init_cfg``,
    ``load_from``, ``--resume``, ``tools/test.py`` and the converters all
    go through it, so each answers a bad file the same way.

    Args:
        path (str): The checkpoint file.
        map_location (str): Where tensors go. Defaults to 'cpu'.

    Returns:
        dict: The checkpoint (``state_dict``, ``meta``, ... or the plain
        state dict of a bare weights file).

    Raises:
        RunError: ``checkpoint not found: PATH`` for a missing file, else
            ``not a checkpoint file: PATH (reason)``.
    """
    path = str(path)
    if not osp.exists(path):
        raise RunError(f'checkpoint not found: {path}')
    if osp.isdir(path):
        raise RunError(f'not a checkpoint file: {path} (a directory)')
    if osp.getsize(path) == 0:
        raise RunError(f'not a checkpoint file: {path} (0 bytes)')
    if _torch_format(path) is None:
        raise RunError(
            f'not a checkpoint file: {path} (not written by torch.save, or '
            'truncated by an interrupted copy or save)')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            ckpt = torch.load(path, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r'GLOBAL (\S+)', str(err))
        what = found.group(1) if found else 'an object torch refuses'
        raise RunError(
            f'not a checkpoint file: {path} (holds Python objects other '
            f'than tensors and training state: {what})') from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError,
            IndexError) as err:
        raise RunError(f'not a checkpoint file: {path} (damaged: '
                       f'{type(err).__name__}: {str(err)[:200]})') from None
    # weights under 'state_dict' (mmengine), at the top (bare) or under
    # 'model' (release files of the reference code, as mmdet/mmseg accept)
    parts = [state_dict_of(ckpt), ckpt.get('model')] \
        if isinstance(ckpt, dict) else []
    if not any(isinstance(v, torch.Tensor) for part in parts
               if isinstance(part, dict) for v in part.values()):
        raise RunError(f'not a checkpoint file: {path} (holds a '
                       f'{type(ckpt).__name__} without model weights)')
    return ckpt


def state_dict_of(checkpoint: dict,
                  strip_prefix: str = 'module.') -> Dict[str, object]:
    """The model weights of a checkpoint, with a DDP ``module.`` prefix
    removed (as mmengine's ``load_checkpoint`` does)."""
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        return {}
    return {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v
            for k, v in state.items()}


def state_dict_mismatch(model: nn.Module,
                        state_dict: Dict[str, object]) -> CheckpointMismatch:
    """Compare a checkpoint's weights with ``model.state_dict()``, after
    the model's own ``load_state_dict`` pre-hooks have adapted them (as
    mmpretrain's hooks resize a ``pos_embed`` of another size).

    Nothing is copied into the model: a last pre-hook on every module
    compares and then takes out that module's own keys.

    Args:
        model (nn.Module): The model (unwrapped).
        state_dict (dict): Key to tensor, as :func:`state_dict_of` returns.

    Returns:
        CheckpointMismatch: Missing, unexpected and differently shaped keys.
    """
    own = model.state_dict(keep_vars=True)
    direct: Dict[str, List[str]] = {}
    for key in own:
        direct.setdefault(key[:key.rfind('.') + 1], []).append(key)
    present, shapes = set(), []

    def compare(module, local, prefix, *args) -> None:
        for key in direct.get(prefix, []):
            if key not in local:
                continue
            value = local.pop(key)
            present.add(key)
            if isinstance(value, torch.Tensor) and \
                    value.shape != own[key].shape:
                shapes.append(f'{key}: {list(value.shape)} in the '
                              f'checkpoint vs {list(own[key].shape)} in the '
                              'model')

    handles = [m.register_load_state_dict_pre_hook(compare)
               for m in model.modules()]
    try:
        result = model.load_state_dict(dict(state_dict), strict=False)
    finally:
        for handle in handles:
            handle.remove()
    return CheckpointMismatch(
        missing=[k for k in result.missing_keys if k not in present],
        unexpected=list(result.unexpected_keys),
        shapes=shapes,
        num_model_keys=len(own))


def _some(keys: List[str]) -> str:
    shown = ', '.join(keys[:_SHOWN_KEYS])
    more = len(keys) - _SHOWN_KEYS
    return shown + (f' (+{more} more)' if more > 0 else '')


def mismatch_text(mismatch: CheckpointMismatch) -> str:
    """One line naming the mismatched keys, at most a few of each kind."""
    parts = []
    for name, keys in (('different shape', mismatch.shapes),
                       ('missing', mismatch.missing), ('unexpected',
                                                       mismatch.unexpected)):
        if keys:
            parts.append(f'{len(keys)} {name}: {_some(keys)}')
    return '; '.join(parts)


def resume_candidates(work_dir: str) -> List[str]:
    """The checkpoints a run could resume from, newest first.

    The file ``work_dir/last_checkpoint`` names (read with mmengine's
    ``find_latest_checkpoint``) comes first, always looked up by its file
    name in ``work_dir``: a run that was moved, or kept under
    ``previous_<time>/``, resumes itself. Then every ``epoch_N.pth`` /
    ``iter_N.pth`` of ``work_dir``, by decreasing N (``epoch_10`` before
    ``epoch_9``).

    Args:
        work_dir (str): The run's work directory.

    Returns:
        list[str]: Paths, without repetitions; empty for a fresh work dir.
    """
    found = []
    last = find_latest_checkpoint(work_dir) if osp.isfile(
        osp.join(work_dir, 'last_checkpoint')) else None
    if last:
        found.append(osp.join(work_dir, osp.basename(last)))
    numbered = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else []:
        match = CKPT_NAME.match(name)
        if match:
            numbered.append((int(match.group(2)), name))
    for _, name in sorted(numbered, reverse=True):
        path = osp.join(work_dir, name)
        if not any(osp.abspath(path) == osp.abspath(p) for p in found):
            found.append(path)
    return found


def load_from_local_safe(filename: str, map_location=None) -> dict:
    """mmengine's loader of local files, through :func:`read_checkpoint`."""
    return read_checkpoint(osp.expanduser(filename), map_location)


CheckpointLoader.register_scheme(
    prefixes='', loader=load_from_local_safe, force=True)
