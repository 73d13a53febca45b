"""What the checkpoint converters share: loading, key checks, saving."""
import argparse
from collections import Counter
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

import mmumae  # noqa: F401  (registers the models, allows mmengine files)

Shapes = Dict[str, Tuple[int, ...]]


class ConversionError(ValueError):
    """A conversion that would drop or leave unset backbone weights."""


def load_checkpoint_file(path: str) -> dict:
    """Load a checkpoint on the CPU, weights-only.

    mmengine files (message hub, numpy scalars) load through the allow-list
    of :mod:`mmumae.compat`; release files of the reference code may also
    hold its ``argparse.Namespace`` of arguments, a plain attribute
    container, allowed here too.
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = _load_checkpoint(path, map_location='cpu')
    if not isinstance(ckpt, dict):
        raise ConversionError(f'{path} holds a {type(ckpt).__name__}, not a '
                              f'checkpoint dict; pass a saved checkpoint.')
    return ckpt


def shapes_of(state: Dict[str, torch.Tensor]) -> Shapes:
    """Key -> shape of a state dict."""
    return {k: tuple(v.shape) for k, v in state.items()}


def prefix_counts(keys: Iterable[str]) -> str:
    """``'neck.*: 12, head.*: 0'``-style summary of keys by first part."""
    counts = Counter(k.split('.', 1)[0] for k in keys)
    return ', '.join(f'{p}.*: {n}' for p, n in sorted(counts.items()))


def check_keys(got: Shapes, expected: Shapes, what: str,
               allow_missing: Iterable[str] = ()) -> None:
    """Print missing, unexpected and mis-shaped keys; raise if any.

    Args:
        got (dict): Key -> shape of the converted state dict.
        expected (dict): Key -> shape the target model has.
        what (str): The target, for messages.
        allow_missing (Iterable[str]): Keys of ``expected`` that may be
            absent (they keep their initialisation on purpose).

    Raises:
        ConversionError: When a key is missing, unexpected or mis-shaped.
    """
    allowed = set(allow_missing)
    missing = sorted(k for k in expected if k not in got and k not in allowed)
    unexpected = sorted(k for k in got if k not in expected)
    shapes = sorted(k for k in got
                    if k in expected and got[k] != expected[k])
    print(f'missing keys ({len(missing)}): {missing}')
    print(f'unexpected keys ({len(unexpected)}): {unexpected}')
    if shapes:
        print('shape mismatches: ' + ', '.join(
            f'{k} {got[k]} vs {expected[k]}' for k in shapes))
    problems: List[str] = []
    if missing:
        problems.append(f'{len(missing)} {what} keys would stay at their '
                        f'initialisation (e.g. {missing[0]})')
    if unexpected:
        problems.append(f'{len(unexpected)} keys have no place in the '
                        f'{what} (e.g. {unexpected[0]})')
    if shapes:
        k = shapes[0]
        problems.append(f'{len(shapes)} keys have another shape (e.g. {k}: '
                        f'{got[k]} vs {expected[k]})')
    if problems:
        raise ConversionError('; '.join(problems) + '. Check that the input '
                              'is the model you named and is complete.')


def backbone_from_config(cfg_text: str,
                         path: Optional[str] = None) -> torch.nn.Module:
    """Build (not initialise) the backbone of a config text or file."""
    if path is not None:
        cfg = Config.fromfile(path)
    else:
        cfg = Config.fromstring(cfg_text, file_format='.py')
    from mmpretrain.registry import MODELS
    backbone_cfg = dict(cfg.model.backbone)
    backbone_cfg.pop('init_cfg', None)
    return MODELS.build(backbone_cfg)


def save_checkpoint_file(state: Dict[str, torch.Tensor], meta: dict,
                         path: str) -> None:
    """Write ``{'meta': meta, 'state_dict': state}`` (mmengine's layout)."""
    torch.save(dict(meta=meta, state_dict=state), path)
    print(f'saved {len(state)} tensors to {path}')
