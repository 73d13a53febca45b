"""The allow-list that lets torch >= 2.6 read mmengine's checkpoints.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine
0.10.7 (the latest release) saves types that torch's weights-only
unpickler refuses: ``mmengine.logging.HistoryBuffer`` (the message hub's log
scalars) and numpy arrays, scalars and dtypes. Unnecessary once mmengine
allow-lists its own types (no release up to 0.10.7 does).

:func:`checkpoint_safe_globals` lists exactly those types, also under their
numpy 1.x module path ``numpy.core.multiarray``. A pickled ``HistoryBuffer``
refers to its statistics methods through ``builtins.getattr``, which would
give a file access to any attribute of any allowed object, so that name maps
to :func:`_history_buffer_getattr`, which resolves only those methods.

The list is used only inside :func:`runsafe.read_checkpoint` (with
``torch.serialization.safe_globals``): importing runsafe changes no global
state of torch or numpy.
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np

__all__ = ['checkpoint_safe_globals']

# Statistics methods that mmengine's HistoryBuffer registers by default.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


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
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'runsafe.safe_globals: refusing getattr({owner!r}, {name!r}) in a '
        'weights-only load; only HistoryBuffer statistics methods are '
        'allowed. Load the file with torch.load(..., weights_only=False) '
        'only if you trust it.')


def checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """Return the globals runsafe allow-lists for weights-only loading.

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
