"""A local file backend whose checkpoints survive a kill or a full disk."""
import os
import os.path as osp
import shutil
import time
from typing import Dict, List, Union

from mmengine.fileio import LocalBackend, register_backend

from .errors import RunError

__all__ = ['AtomicLocalBackend']

# Seconds to pause between writing a file and moving it into place: only
# for tests that kill a run in the middle of a save.
SAVE_DELAY_ENV = 'MMUMAE_CKPT_SAVE_DELAY'
# Files whose removal waits for the next complete write in their folder.
_PENDING: Dict[str, List[str]] = {}


def _mib(num_bytes: float) -> str:
    return f'{num_bytes / 2**20:.1f} MiB'


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` with crash-safe ``put`` and ``remove``.

    Selected with ``CheckpointHook(backend_args=dict(backend='atomic_local'))``
    (the shared runtimes do). mmengine's ``CheckpointHook`` deletes the
    oldest kept checkpoint, or the old ``best_*.pth``, *before* it writes
    the new one, and writes in place. Here:

    * ``put`` writes ``.<name>.tmp`` in the same folder, flushes it to disk
      and renames it to ``<name>`` (atomic: the old file or the new one,
      never half of one). A failed write (a full disk) removes the
      temporary file and raises :class:`~runsafe.RunError` naming the
      file, the error and the free space.
    * ``remove`` only marks the file; it is deleted after the next complete
      ``put`` into the same folder. A kill, a full disk or a refused save
      (non-finite weights) therefore never costs a kept checkpoint.
    """

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        """Write ``obj`` to ``filepath`` atomically; see the class."""
        filepath = str(filepath)
        folder = osp.dirname(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        tmp = osp.join(folder, f'.{osp.basename(filepath)}.tmp')
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            if osp.lexists(tmp):
                os.remove(tmp)
            _PENDING.pop(folder, None)  # keep what was to be replaced
            free = shutil.disk_usage(folder).free
            raise RunError(
                f'cannot save {filepath}: {err.strerror} ({_mib(free)} free '
                f'in {folder}, {_mib(len(obj))} needed). The partial file '
                'was removed and the earlier checkpoints are kept: free '
                'space, then continue with --resume.') from None
        delay = float(os.environ.get(SAVE_DELAY_ENV, 0) or 0)
        if delay > 0:
            time.sleep(delay)
        os.replace(tmp, filepath)
        for old in _PENDING.pop(folder, []):
            if osp.abspath(old) != osp.abspath(filepath) and osp.isfile(old):
                os.remove(old)

    def remove(self, filepath: Union[str, os.PathLike]) -> None:
        """Delete ``filepath`` after the next complete ``put`` beside it."""
        filepath = str(filepath)
        folder = osp.dirname(osp.abspath(filepath))
        _PENDING.setdefault(folder, []).append(filepath)
