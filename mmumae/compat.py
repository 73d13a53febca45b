"""Compatibility fixes for this stack (torch 2.14, numpy 2.4, OpenMMLab 2.x).

Imported first by :mod:`mmumae`; every fix is applied once at import time
(calling :func:`apply` again is a no-op) and none edits site-packages.

1. **Resuming from mmengine checkpoints.** torch >= 2.6 loads with
   ``weights_only=True`` by default, and mmengine 0.10.7 calls ``torch.load``
   without the argument, so ``Runner(resume=True)`` and ``load_checkpoint``
   fail with ``UnpicklingError: Weights only load failed``. The check stays
   on; only the types a real mmengine checkpoint holds are allow-listed with
   :func:`torch.serialization.add_safe_globals`:

   * ``mmengine.logging.HistoryBuffer`` (the message hub's log scalars);
   * numpy arrays, scalars and dtypes (``ndarray``, ``dtype`` and its
     per-type subclasses from ``numpy.dtypes``, ``_reconstruct``, ``scalar``),
     also under their numpy 1.x module path ``numpy.core.multiarray`` so
     checkpoints written with numpy 1.x load too;
   * ``builtins.getattr``, which a pickled ``HistoryBuffer`` uses to refer to
     its statistics methods (``getattr(HistoryBuffer, 'mean')``). The real
     ``getattr`` would give a checkpoint access to any attribute of any
     allowed object, so the name is mapped to :func:`_history_buffer_getattr`,
     which resolves only those methods and refuses everything else.

2. **numpy 2.4 removed** ``np.in1d``; mmpretrain's retrieval metrics
   (``RetrievalRecall``, ``RetrievalAveragePrecision``) still call it. An
   alias with the old semantics is added only when numpy lacks it. The other
   removed aliases (``np.float`` ...) appear only in code paths this project
   does not use (mmdet's YouTube-VIS evaluation, mmcv's ``pixel_group``) and
   are left alone.
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch

__all__ = ['apply', 'checkpoint_safe_globals']

# Statistics methods that mmengine's HistoryBuffer registers by default.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

_applied = False


def _history_buffer_getattr(owner: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while weights-only unpickling.

    Resolves only ``getattr(HistoryBuffer, <statistics method>)``, which is
    what a pickled :class:`mmengine.logging.HistoryBuffer` contains.

    Args:
        owner (Any): The object whose attribute the checkpoint asks for.
        name (str): The attribute name.

    Returns:
        Callable: The statistics method.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    from mmengine.logging import HistoryBuffer
    allowed = set(_HISTORY_BUFFER_STATISTICS)
    allowed.update(HistoryBuffer._statistics_methods)
    if (owner is HistoryBuffer and isinstance(name, str)
            and not name.startswith('_') and name in allowed):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'mmumae.compat: refusing getattr({owner!r}, {name!r}) in a '
        'weights-only load; only HistoryBuffer statistics methods are '
        'allowed. Load the file with torch.load(..., weights_only=False) '
        'only if you trust it.')


def checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """Return the globals mmumae allow-lists for weights-only loading.

    Returns:
        list: Entries for :func:`torch.serialization.add_safe_globals`,
        either objects or ``(object, 'module.qualified.name')`` pairs.
    """
    from mmengine.logging import HistoryBuffer
    numpy2 = hasattr(np, '_core')
    multiarray = np._core.multiarray if numpy2 else np.core.multiarray
    dtype_classes = [
        cls for cls in vars(getattr(np, 'dtypes', object())).values()
        if isinstance(cls, type) and issubclass(cls, np.dtype)
    ]
    safe = [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        *dtype_classes,
        multiarray._reconstruct,
        multiarray.scalar,
    ]
    if numpy2:  # numpy 1.x pickles name the same functions under numpy.core
        safe += [
            (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
            (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        ]
    return safe


def _allow_mmengine_checkpoints() -> None:
    # torch < 2.4 has no allow-list (and loads with weights_only=False).
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(checkpoint_safe_globals())


def _in1d(ar1, ar2, assume_unique=False, invert=False, *, kind=None):
    """``np.in1d`` as numpy < 2.4 had it: ``np.isin`` on the flattened
    first argument."""
    return np.isin(
        np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert,
        kind=kind)


def _restore_numpy_aliases() -> None:
    if not hasattr(np, 'in1d'):
        np.in1d = _in1d


def apply() -> None:
    """Apply every fix once; later calls do nothing."""
    global _applied
    if _applied:
        return
    _allow_mmengine_checkpoints()
    _restore_numpy_aliases()
    _applied = True


apply()
