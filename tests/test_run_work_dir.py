"""The work directory: a lock file or work dir that cannot be used stops a
run with one line naming the file and the fix, and writes nothing; the
lock keeps a second process out; ``last_checkpoint`` is replaced in one
step.

tools/train.py with a real Runner (``SafeRunner`` and the shared runtime)
on a tiny stock MAE; where file permissions must apply (they do not for
root), as a subprocess without the capabilities that override them.
"""
import ctypes
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tool_helpers import (MAE_ITERS, REPO, RUNTIME, load_tool, mae_model,
                          tool_error, write_image_folders)

from runsafe import WorkDirHook, WorkDirLock

train_tool = load_tool(REPO / 'tools' / 'train.py', 'mmumae_work_dir_train')
TRAIN_PY = str(REPO / 'tools' / 'train.py')
# prctl(PR_CAPBSET_DROP, cap): CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
_PR_CAPBSET_DROP, _DAC_CAPS = 24, (1, 2)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> Path:
    return write_image_folders(tmp_path_factory.mktemp('data'),
                               {'a': 4, 'b': 2}, (40, 48))


def _mae_cfg(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / 'mae_tiny.py'
    path.write_text(MAE_ITERS.format(runtime=RUNTIME, model=mae_model(
        data_dir), max_iters=1, interval=1, keep=1))
    return path


def _error(*args) -> str:
    """The one line tools/train.py stops with (in this process)."""
    return tool_error(train_tool, *args)


def _permissions_apply() -> None:
    """In the child, before exec: as root, drop the capabilities that let
    root write (and read) files whatever their permissions."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(99)


def _run(*args) -> subprocess.CompletedProcess:
    """tools/train.py as a process for which file permissions apply."""
    proc = subprocess.run(
        [sys.executable, TRAIN_PY, *map(str, args)], capture_output=True,
        text=True, timeout=600, preexec_fn=_permissions_apply)
    if proc.returncode == 99:
        pytest.skip('cannot drop the capabilities that override file '
                    'permissions')
    return proc


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else
            'dir' for p in sorted(folder.rglob('*'))}


def test_lock_file_that_is_a_directory(tmp_path, data_dir):
    work_dir = tmp_path / 'wd'
    (work_dir / 'run.lock').mkdir(parents=True)
    message = _error(_mae_cfg(tmp_path, data_dir), '--work-dir', work_dir)
    assert message == (
        f'error: cannot lock the work dir: {work_dir}/run.lock is a '
        'directory, not a lock file; remove it (rmdir, if it is empty) or '
        'choose another --work-dir.')
    assert _snapshot(work_dir) == {'run.lock': 'dir'}  # nothing written


def test_lock_file_that_cannot_be_written(tmp_path, data_dir):
    work_dir = tmp_path / 'wd'
    work_dir.mkdir()
    lock = work_dir / 'run.lock'
    lock.write_text('')
    lock.chmod(0o444)
    line = _error_line(_run(_mae_cfg(tmp_path, data_dir), '--work-dir',
                            work_dir))
    assert line == (
        f'error: cannot lock the work dir: {lock} cannot be opened for '
        'writing (Permission denied); make it a writable file (chmod u+w '
        f'{lock}, or remove it), or choose another --work-dir.')
    assert _snapshot(work_dir) == {'run.lock': b''}


def test_resume_in_a_read_only_work_dir(tmp_path, data_dir):
    cfg = _mae_cfg(tmp_path, data_dir)
    work_dir = tmp_path / 'wd'
    train_tool.main([str(cfg), '--work-dir', str(work_dir)])
    before = _snapshot(work_dir)
    work_dir.chmod(0o555)
    try:
        line = _error_line(_run(cfg, '--work-dir', work_dir, '--resume',
                                '--cfg-options', 'train_cfg.max_iters=2'))
        assert _snapshot(work_dir) == before
    finally:
        work_dir.chmod(0o755)
    assert line == (
        f'error: the work dir {work_dir} is not writable (a run writes its '
        'lock, config, log and checkpoints there): make it writable (chmod '
        f'u+w {work_dir}), or copy it (cp -r {work_dir} NEW_DIR) and resume '
        'the copy with --work-dir NEW_DIR --resume.')


def test_lock_is_held_by_one_process_at_a_time(tmp_path):
    """Two processes cannot both hold a work dir's lock; it is free again
    once its holder releases it."""
    first = WorkDirLock(str(tmp_path))
    assert first.acquire() is None
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # another process tries to take it
        os.close(read)
        message = WorkDirLock(str(tmp_path)).acquire()
        os.write(write, (message or 'taken').encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1000).decode()
    os.waitpid(child, 0)
    os.close(read)
    first.release()
    assert answer.startswith(f'{tmp_path} is in use by another run (process '
                             f'{os.getpid()} on ')
    second = WorkDirLock(str(tmp_path))
    assert second.acquire() is None
    second.release()


def test_last_checkpoint_is_replaced_in_one_step(tmp_path):
    """The relative pointer is written beside mmengine's absolute one and
    renamed over it: a reader that opened the old file reads it whole, and
    no temporary file stays behind."""
    pointer = tmp_path / 'last_checkpoint'
    absolute = str(tmp_path / 'iter_2.pth')
    pointer.write_text(absolute)  # as mmengine's CheckpointHook writes it
    runner = SimpleNamespace(
        rank=0, work_dir=str(tmp_path),
        message_hub=SimpleNamespace(get_info=lambda key: absolute))
    with open(pointer) as reader:
        WorkDirHook().after_train_iter(runner, 0)
        assert reader.read() == absolute
    assert pointer.read_text() == 'iter_2.pth'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint']
