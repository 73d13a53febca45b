"""One run per work directory, and no earlier run overwritten."""
import fcntl
import os
import os.path as osp
import socket
import stat
import time
from typing import Optional

from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..checkpoint import CKPT_NAME
from ..errors import RunError

__all__ = ['WorkDirHook', 'WorkDirLock']


def _write_atomic(path: str, text: str) -> None:
    with open(f'{path}.tmp', 'w') as f:
        f.write(text)
    os.replace(f'{path}.tmp', path)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _writable_message(work_dir: str, resume: bool) -> Optional[str]:
    """Why a run cannot write into ``work_dir``, with the fix; or None."""
    if os.access(work_dir, os.W_OK | os.X_OK):
        return None
    copy = (f'copy it (cp -r {work_dir} NEW_DIR) and resume the copy with '
            '--work-dir NEW_DIR --resume' if resume else
            'choose another --work-dir')
    return (f'the work dir {work_dir} is not writable (a run writes its lock, '
            'config, log and checkpoints there): make it writable (chmod u+w '
            f'{work_dir}), or {copy}.')


class WorkDirLock:
    """The lock of one work directory: ``work_dir/run.lock``, a POSIX lock
    that the kernel releases when the process ends, however it ends.

    ``SafeRunner`` takes it while it is built, before mmengine writes into
    the work dir (its config dump and log folder); :class:`WorkDirHook`
    takes it at ``before_run`` when no runner took it.

    Args:
        work_dir (str): The run's work directory (it exists).
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, 'run.lock')
        self.fd: Optional[int] = None
        # the run that held the lock file and ended without releasing it
        self.taken_over_from = ''

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self.fd is not None

    def acquire(self, resume: bool = False) -> Optional[str]:
        """Take the lock.

        Args:
            resume (bool): Whether the run resumes (for the advice when the
                work dir is read-only).

        Returns:
            str | None: None when taken, else why not, with the fix (the
            work dir is busy, not writable, or ``run.lock`` is not a file
            this process can write).
        """
        if self.held:
            return None
        message = _writable_message(self.work_dir, resume)
        if message:
            return message
        if osp.isdir(self.path) and not osp.islink(self.path):
            return (f'cannot lock the work dir: {self.path} is a directory, '
                    'not a lock file; remove it (rmdir, if it is empty) or '
                    'choose another --work-dir.')
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
        except OSError as err:
            return (f'cannot lock the work dir: {self.path} cannot be opened '
                    f'for writing ({_reason(err)}); make it a writable file '
                    f'(chmod u+w {self.path}, or remove it), or choose '
                    'another --work-dir.')
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return (f'cannot lock the work dir: {self.path} is not a '
                        'regular file; remove it or choose another '
                        '--work-dir.')
            holder = os.read(fd, 300).decode(errors='replace').strip()
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                os.close(fd)
                return (f'{self.work_dir} is in use by another run '
                        f'({holder}); wait for it to end, or choose another '
                        '--work-dir.')
            os.ftruncate(fd, 0)
            os.pwrite(fd, (
                f'process {os.getpid()} on {socket.gethostname()}, since '
                f'{time.strftime("%Y-%m-%d %H:%M:%S")}').encode(), 0)
        except OSError as err:
            os.close(fd)
            return (f'cannot lock the work dir: {self.path} cannot be locked '
                    f'or written ({_reason(err)}); make it a writable regular '
                    'file (or remove it), or choose another --work-dir.')
        self.fd = fd
        self.taken_over_from = holder
        return None

    def release(self) -> None:
        """Release the lock (closing the file releases the POSIX lock)."""
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


@HOOKS.register_module()
class WorkDirHook(Hook):
    """Guard a run's work directory.

    * The run holds ``work_dir/run.lock`` (a POSIX lock, which the kernel
      releases when the process ends, however it ends; see
      :class:`WorkDirLock`). A second run in the same work dir is refused,
      naming the process that holds it; ``SafeRunner`` takes the lock while
      it is built, so a refused run writes nothing into the work dir (with
      mmengine's plain ``Runner`` the lock is taken at ``before_run``). A
      lock file left by a run that died is taken over with a warning, and
      the ``.<name>.pth.tmp`` of a save it did not finish is removed. A work
      dir that cannot be written, and a ``run.lock`` that is not a writable
      file, stop the run with the file named and the fix.
    * A run that does not resume, in a work dir holding an earlier run's
      checkpoints, is refused unless the config sets ``overwrite=True``;
      then they are first moved to ``previous_<time>/``.
    * ``last_checkpoint`` is rewritten to hold the checkpoint's file name
      (relative to the work dir) instead of mmengine's absolute path, so a
      moved or kept run resumes itself; the new pointer is written to a
      temporary file and renamed over the old one.

    Only rank 0 touches the files; the other ranks stop with it.
    """
    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) wrote the pointer

    def __init__(self) -> None:
        self._lock: Optional[WorkDirLock] = None  # rank 0's
        self._active = False  # the lock is held for this run (every rank)
        self._pointer: Optional[str] = None

    @staticmethod
    def check(runner, message: Optional[str]) -> None:
        """Raise rank 0's ``message`` (None: all is well) on every rank."""
        if runner.world_size > 1:
            box = [message]
            broadcast_object_list(box)
            message = box[0]
        if message:
            raise RunError(message)

    def before_run(self, runner) -> None:
        """Take the lock, or adopt the one ``SafeRunner`` took
        (``runner.val()`` / ``test()`` after ``train()`` find it held by
        this run already)."""
        if self._active:
            return
        self.check(runner, self._take(runner) if runner.rank == 0 else None)
        self._active = True

    def before_train(self, runner) -> None:
        """Keep (or refuse to overwrite) an earlier run: only a training
        run writes checkpoints, so evaluating in a work dir that holds them
        is fine."""
        self.check(runner, self.keep_earlier_run(runner)
                   if runner.rank == 0 else None)

    def _take(self, runner) -> Optional[str]:
        lock = getattr(runner, 'work_dir_lock', None)
        if lock is None or not lock.held:
            lock = WorkDirLock(runner.work_dir)
            message = lock.acquire(bool(runner.cfg.get('resume')))
            if message:
                return message
        self._lock = lock
        if lock.taken_over_from:
            runner.logger.warning(
                f'{lock.path}: taking over the lock of a run that ended '
                f'without releasing it ({lock.taken_over_from}).')
            lock.taken_over_from = ''
        for name in os.listdir(runner.work_dir):  # saves a kill cut short
            # only regular files: a partial save is one; anything else
            # (a link, a device) was put there by someone else
            if (name.startswith('.') and name.endswith('.pth.tmp')
                    and osp.isfile(osp.join(runner.work_dir, name))
                    and not osp.islink(osp.join(runner.work_dir, name))):
                os.remove(osp.join(runner.work_dir, name))
                runner.logger.info(f'removed {name}, the partial save of an '
                                   'earlier run')
        return None

    def release(self) -> None:
        """Release the lock (at the end of the run; also after an error)."""
        self._active = False
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def after_run(self, runner) -> None:
        """Release the lock; a later ``runner.val()`` or ``runner.test()``
        takes it again."""
        self.release()

    @staticmethod
    def keep_earlier_run(runner) -> Optional[str]:
        """Why a training run that does not resume may not start in a work
        dir holding an earlier run's checkpoints (None: it may). With
        ``overwrite=True`` they, and the earlier run's dumped config, are
        moved to ``previous_<time>/`` first."""
        if runner.cfg.get('resume'):
            return None
        earlier = sorted(
            name for name in os.listdir(runner.work_dir)
            if CKPT_NAME.match(name) or name == 'last_checkpoint'
            or (name.startswith('best_') and name.endswith('.pth')))
        if not earlier:
            return None
        dumped = osp.basename(runner.cfg.filename or '')
        if dumped and osp.isfile(osp.join(runner.work_dir, dumped)):
            earlier.append(dumped)
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
