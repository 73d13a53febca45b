"""One run per work directory, and no earlier run overwritten."""
import fcntl
import os
import os.path as osp
import socket
import time
from typing import Optional

from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..checkpoint import CKPT_NAME
from ..errors import RunError

__all__ = ['WorkDirHook']


def _write_atomic(path: str, text: str) -> None:
    with open(f'{path}.tmp', 'w') as f:
        f.write(text)
    os.replace(f'{path}.tmp', path)


@HOOKS.register_module()
class WorkDirHook(Hook):
    """Guard a run's work directory.

    * The run holds ``work_dir/run.lock`` (a POSIX lock, which the kernel
      releases when the process ends, however it ends). A second run in the
      same work dir is refused, naming the process that holds it; a lock
      file left by a run that died is taken over with a warning, and the
      ``.<name>.pth.tmp`` of a save it did not finish is removed.
    * A run that does not resume, in a work dir holding an earlier run's
      checkpoints, is refused unless the config sets ``overwrite=True``;
      then they are first moved to ``previous_<time>/``.
    * ``last_checkpoint`` is rewritten to hold the checkpoint's file name
      (relative to the work dir) instead of mmengine's absolute path, so a
      moved or kept run resumes itself.

    Only rank 0 touches the files; the other ranks stop with it.
    """
    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) wrote the pointer

    def __init__(self) -> None:
        self._fd: Optional[int] = None
        self._pointer: Optional[str] = None

    def _check(self, runner, message: Optional[str]) -> None:
        if runner.world_size > 1:
            box = [message]
            broadcast_object_list(box)
            message = box[0]
        if message:
            raise RunError(message)

    def before_run(self, runner) -> None:
        """Take the lock (``runner.val()`` / ``test()`` after ``train()``
        find it held by this run already)."""
        if self._fd is not None:
            return
        self._check(runner, self._lock(runner) if runner.rank == 0 else None)

    def before_train(self, runner) -> None:
        """Keep (or refuse to overwrite) an earlier run: only a training
        run writes checkpoints, so evaluating in a work dir that holds them
        is fine."""
        self._check(runner, self._keep_earlier_run(runner)
                    if runner.rank == 0 else None)

    def _lock(self, runner) -> Optional[str]:
        path = osp.join(runner.work_dir, 'run.lock')
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        holder = os.read(fd, 300).decode(errors='replace').strip()
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return (f'{runner.work_dir} is in use by another run ({holder}); '
                    'wait for it to end, or choose another --work-dir.')
        if holder:
            runner.logger.warning(
                f'{path}: taking over the lock of a run that ended without '
                f'releasing it ({holder}).')
        for name in os.listdir(runner.work_dir):  # saves a kill cut short
            # only regular files: a partial save is one; anything else
            # (a link, a device) was put there by someone else
            if (name.startswith('.') and name.endswith('.pth.tmp')
                    and osp.isfile(osp.join(runner.work_dir, name))
                    and not osp.islink(osp.join(runner.work_dir, name))):
                os.remove(osp.join(runner.work_dir, name))
                runner.logger.info(f'removed {name}, the partial save of an '
                                   'earlier run')
        os.ftruncate(fd, 0)
        os.pwrite(fd, (f'process {os.getpid()} on {socket.gethostname()}, '
                       f'since {time.strftime("%Y-%m-%d %H:%M:%S")}').encode(),
                  0)
        self._fd = fd
        return None

    def release(self) -> None:
        """Release the lock (at the end of the run; also after an error)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the POSIX lock
            self._fd = None

    def after_run(self, runner) -> None:
        """Release the lock; a later ``runner.val()`` or ``runner.test()``
        takes it again."""
        self.release()

    def _keep_earlier_run(self, runner) -> Optional[str]:
        if runner.cfg.get('resume'):
            return None
        earlier = sorted(
            name for name in os.listdir(runner.work_dir)
            if CKPT_NAME.match(name) or name == 'last_checkpoint'
            or (name.startswith('best_') and name.endswith('.pth')))
        if not earlier:
            return None
        if not runner.cfg.get('overwrite'):
            return (f'{runner.work_dir} holds checkpoints of an earlier run '
                    f'({", ".join(earlier[:4])}): add --resume to continue '
                    'it, --overwrite to start afresh (they are moved to a '
                    'previous_<time>/ folder), or choose another --work-dir.')
        keep = osp.join(runner.work_dir,
                        time.strftime('previous_%Y%m%d_%H%M%S'))
        os.makedirs(keep, exist_ok=True)
        for name in earlier:
            os.replace(osp.join(runner.work_dir, name), osp.join(keep, name))
        runner.logger.warning(
            f'--overwrite: moved the earlier run\'s {len(earlier)} '
            f'checkpoint files to {keep}; starting afresh.')
        return None

    def _relative_pointer(self, runner) -> None:
        last = runner.message_hub.get_info('last_ckpt')
        if runner.rank != 0 or not last or last == self._pointer:
            return
        self._pointer = last
        _write_atomic(osp.join(runner.work_dir, 'last_checkpoint'),
                      osp.basename(last))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Make a new ``last_checkpoint`` relative."""
        self._relative_pointer(runner)

    def after_train_epoch(self, runner) -> None:
        """Make a new ``last_checkpoint`` relative."""
        self._relative_pointer(runner)
