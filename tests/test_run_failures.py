"""Run failures users meet, each reproduced on a real run: kills during
saves, locks, NaN stops and rollbacks, exact resume, full disks, bad data.

tools/train.py and tools/test.py with a real mmengine Runner (``SafeRunner``
and the hooks of the shared runtime) on a tiny stock mmpretrain MAE or ViT
classifier and a few random JPEGs; in-process where only the outcome
matters, as a subprocess killed with a real signal where the run is
interrupted.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmpretrain.registry import HOOKS, MODELS, OPTIM_WRAPPERS
from tool_helpers import (CLASSIFIER_MODEL, MAE_ITERS, REPO, RUNTIME,
                          load_tool, log_text, mae_model, tool_error,
                          write_image_folders)

from runsafe import RunError, read_checkpoint

train_tool = load_tool(REPO / 'tools' / 'train.py', 'mmumae_run_train')
test_tool = load_tool(REPO / 'tools' / 'test.py', 'mmumae_run_test')
TRAIN_PY = str(REPO / 'tools' / 'train.py')

# Epoch-based MAE: 6 images at batch 2 = 3 iterations per epoch; every loss
# logged unsmoothed (window 1), a checkpoint per epoch.
MAE_EPOCHS = """
_base_ = ['{runtime}']
{model}
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs={epochs})
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(interval=1, max_keep_ckpts=3))
log_processor = dict(window_size=1)
"""

_LOADER = """dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle={shuffle}),
    dataset=dict(type='CustomDataset', data_root='{data}',
                 pipeline=[dict(type='SafeLoadImageFromFile'),
                           dict(type='Resize', scale=32),
                           dict(type='PackInputs')]))"""
# The 2-class ViT, trained 1 epoch at a time and validated each epoch,
# keeping its best checkpoint.
CLASSIFIER_RUN = CLASSIFIER_MODEL + """
train_dataloader = {train}
val_dataloader = {val}
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
"""


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> Path:
    return write_image_folders(tmp_path_factory.mktemp('data'),
                               {'a': 4, 'b': 2}, (40, 48))


def _mae_iters(tmp_path, data_dir, max_iters=1, interval=1, keep=1) -> Path:
    path = tmp_path / 'mae_iters.py'
    path.write_text(MAE_ITERS.format(runtime=RUNTIME, model=mae_model(
        data_dir), max_iters=max_iters, interval=interval, keep=keep))
    return path


def _mae_epochs(tmp_path, data_dir, epochs=3) -> Path:
    path = tmp_path / 'mae_epochs.py'
    path.write_text(MAE_EPOCHS.format(runtime=RUNTIME,
                                      model=mae_model(data_dir),
                                      epochs=epochs))
    return path


def _classifier(tmp_path, data_dir) -> Path:
    path = tmp_path / 'cls_tiny.py'
    path.write_text(CLASSIFIER_RUN.format(
        runtime=RUNTIME,
        train=_LOADER.format(batch=2, shuffle=True, data=data_dir),
        val=_LOADER.format(batch=3, shuffle=False, data=data_dir)))
    return path


def _train(*args) -> None:
    train_tool.main([str(a) for a in args])


_error = tool_error  # the one line a tool stops with


def _start(*args, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, TRAIN_PY, *map(str, args)],
        env=dict(os.environ, PYTHONUNBUFFERED='1', **env),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for(condition, proc, timeout=600) -> bool:
    deadline = time.time() + timeout
    while not condition() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return condition()


def _pointer(work_dir: Path) -> str:
    return (work_dir / 'last_checkpoint').read_text().strip()


def _finite(path: Path) -> bool:
    state = read_checkpoint(str(path))['state_dict']
    return all(torch.isfinite(v).all() for v in state.values()
               if v.is_floating_point())


# ----------------------------------------------------------------------------
# 1. NaN / inf
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('interval, found', [
    (1, r'non-finite weights after iteration (\d+)'),
    (100, r'non-finite loss at iteration (\d+)'),
], ids=['weights-before-saving', 'loss'])
def test_lr_1e3_stops_at_the_first_non_finite_step(tmp_path, data_dir,
                                                   interval, found):
    cfg = _mae_iters(tmp_path, data_dir, max_iters=60, interval=interval,
                     keep=2)
    work_dir = tmp_path / 'wd'
    message = _error(train_tool, cfg, '--work-dir', work_dir,
                     '--cfg-options', 'optim_wrapper.optimizer.lr=1e3')
    stop = int(re.search(found, message).group(1))
    assert stop < 60 and 'Lower the learning rate' in message
    kept = sorted(work_dir.glob('iter_*.pth'))
    if interval == 1:  # the last two finite checkpoints, none of them lost
        assert [p.name for p in kept] == [
            f'iter_{i}.pth' for i in range(max(1, stop - 2), stop)]
        assert _pointer(work_dir) == f'iter_{stop - 1}.pth'
    assert all(_finite(p) for p in kept)


def test_opt_in_rollback_continues_from_the_last_good_checkpoint(
        tmp_path, data_dir):
    # 3 good iterations at lr 1e-3 (checkpoint iter_3), then lr x1e33: the
    # weights blow up and the loss turns NaN within 2 iterations. With one
    # rollback at lr x1e-33 the run goes back to iter_3 and trains on.
    cfg = _mae_iters(tmp_path, data_dir, max_iters=8, interval=3, keep=2)
    with open(cfg, 'a') as f:
        f.write("param_scheduler = [dict(type='MultiStepLR', by_epoch=False, "
                "milestones=[3], gamma=1e33)]\n")
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir, '--cfg-options',
           'default_hooks.finite_loss.rollbacks=1',
           'default_hooks.finite_loss.rollback_lr_factor=1e-33')
    log = log_text(work_dir)
    found = re.search(r'non-finite loss at iteration ([45]) \(epoch 1\): '
                      r"\{'loss': nan\}; stopped before saving it\. Rolled "
                      r'back to (\S+) \(iteration 3\); lr x1e-33, 0 '
                      r'rollback\(s\) left', log)
    assert found, log[-3000:]
    assert found.group(2) == str(work_dir / 'iter_3.pth')
    assert sorted(p.name for p in work_dir.glob('iter_*.pth')) == [
        'iter_6.pth', 'iter_8.pth']
    final = read_checkpoint(str(work_dir / 'iter_8.pth'))
    assert _finite(work_dir / 'iter_8.pth')
    lr = final['optimizer']['param_groups'][0]['lr']
    assert lr == pytest.approx(1e-3, rel=1e-6)


def test_rollback_without_a_checkpoint_stops(tmp_path, data_dir):
    cfg = _mae_iters(tmp_path, data_dir, max_iters=60, interval=100)
    message = _error(train_tool, cfg, '--work-dir', tmp_path / 'wd',
                     '--cfg-options', 'optim_wrapper.optimizer.lr=1e3',
                     'default_hooks.finite_loss.rollbacks=2')
    assert re.search(r'non-finite loss at iteration \d+', message)


class CPULossScaleOptimWrapper(OptimWrapper):
    """What ``AmpOptimWrapper`` does with its loss scaler (scale the loss,
    unscale, skip a step whose gradients overflow, back the scale off),
    with torch's real ``GradScaler`` on the CPU, where mmengine refuses to
    build ``AmpOptimWrapper``. Records the scale after each step."""
    scales: list = []

    def __init__(self, init_scale: float, backoff_factor: float, **kwargs):
        super().__init__(**kwargs)
        self.loss_scaler = torch.amp.GradScaler(
            'cpu', init_scale=init_scale, backoff_factor=backoff_factor)

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        self.loss_scaler.scale(loss).backward(**kwargs)

    def step(self, **kwargs) -> None:
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update()
        CPULossScaleOptimWrapper.scales.append(self.loss_scaler.get_scale())


OPTIM_WRAPPERS.register_module(module=CPULossScaleOptimWrapper, force=True)


def _scaled_run(tmp_path, data_dir, max_iters, *options):
    CPULossScaleOptimWrapper.scales.clear()
    cfg = _mae_iters(tmp_path, data_dir, max_iters=max_iters, interval=100)
    work_dir = tmp_path / 'wd'
    return work_dir, [cfg, '--work-dir', work_dir, '--cfg-options',
                      'optim_wrapper.type=CPULossScaleOptimWrapper', *options]


def test_fp16_skipped_steps_stop_the_run(tmp_path, data_dir):
    # lr 1e3 drives the weights to inf/NaN; from then on every gradient
    # overflows, the scaler skips each step and halves its scale.
    work_dir, args = _scaled_run(
        tmp_path, data_dir, 60, 'optim_wrapper.init_scale=1.0',
        'optim_wrapper.backoff_factor=0.5', 'optim_wrapper.optimizer.lr=1e3',
        'default_hooks.finite_loss.max_skipped_steps=5')
    message = _error(train_tool, *args)
    found = re.search(r'fp16 loss scaling skipped 5 consecutive steps up to '
                      r'iteration (\d+) \(epoch 1\) \(loss scale now (\S+)\): '
                      r'the gradients keep overflowing', message)
    assert found, message
    scales = CPULossScaleOptimWrapper.scales
    stop = int(found.group(1))
    assert len(scales) == stop < 60
    last = scales[-6:] if stop > 5 else [1.0] + scales
    assert [b / a for a, b in zip(last, last[1:])] == [0.5] * 5
    assert float(found.group(2)) == scales[-1]
    assert not list(work_dir.glob('iter_*.pth'))


def test_fp16_a_few_skipped_steps_do_not_stop_the_run(tmp_path, data_dir):
    # Scaled by 3.4e38 (near float32's largest, 3.403e38), this model's
    # first gradients overflow; after a few halvings the scale fits.
    init = 3.4e38
    work_dir, args = _scaled_run(
        tmp_path, data_dir, 12, f'optim_wrapper.init_scale={init}',
        'optim_wrapper.backoff_factor=0.5',
        'default_hooks.finite_loss.max_skipped_steps=100')
    _train(*args)
    scales = CPULossScaleOptimWrapper.scales
    skipped = sum(b < a for a, b in zip([init] + scales, scales))
    assert len(scales) == 12 and skipped > 0
    # no growth within 12 steps (torch grows after 2000 good ones)
    assert scales[-1] == pytest.approx(init * 0.5**skipped, rel=1e-6)
    assert (work_dir / 'iter_12.pth').is_file()


# ----------------------------------------------------------------------------
# 2. one run per work dir; last_checkpoint relative to it
# ----------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict:
    """Every path under ``folder``, with the bytes of each file."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else
            'dir' for p in sorted(folder.rglob('*'))}


def test_second_run_in_a_work_dir_is_refused(tmp_path, data_dir):
    cfg = _mae_iters(tmp_path, data_dir, max_iters=1000, interval=1000)
    work_dir = tmp_path / 'wd'
    lock = work_dir / 'run.lock'
    first = _start(cfg, '--work-dir', work_dir)
    try:
        # it holds the lock, dumped its config and logs iterations
        assert _wait_for(lambda: lock.is_file() and lock.read_text() and (
            work_dir / cfg.name).is_file() and 'Iter(train)' in ''.join(
                p.read_text() for p in work_dir.glob('*/*.log')), first)
        first.send_signal(signal.SIGSTOP)  # its files stay as they are
        before = _snapshot(work_dir)
        # Another run, and a resubmitted job resuming, while it runs; with
        # another config, which mmengine would dump over the running one's.
        for extra in ([], ['--resume']):
            message = _error(train_tool, cfg, '--work-dir', work_dir, *extra,
                             '--cfg-options', 'train_cfg.max_iters=5')
            assert f'{work_dir} is in use by another run (process ' \
                f'{first.pid} on ' in message
            # nothing written: no config dump, no new log folder
            assert _snapshot(work_dir) == before
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The dead run's lock file is taken over, with a message.
    _train(cfg, '--work-dir', work_dir, '--overwrite', '--cfg-options',
           'train_cfg.max_iters=1')
    log = log_text(work_dir)
    assert f'taking over the lock of a run that ended without releasing it ' \
        f'(process {first.pid} on' in log
    assert lock.read_text() == ''  # released at the end


def test_kept_run_resumes_itself(tmp_path, data_dir):
    cfg = _mae_iters(tmp_path, data_dir, max_iters=2, keep=3)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir)
    assert _pointer(work_dir) == 'iter_2.pth'  # relative
    _train(cfg, '--work-dir', work_dir, '--overwrite', '--cfg-options',
           'train_cfg.max_iters=1')
    kept = next(work_dir.glob('previous_*'))
    new = {p.name: p.read_bytes() for p in work_dir.glob('iter_*.pth')}
    assert list(new) == ['iter_1.pth']
    # The kept run continues from its own iter_2, not the new run's file.
    _train(cfg, '--work-dir', kept, '--resume', '--cfg-options',
           'train_cfg.max_iters=3')
    assert 'resumed epoch: 0, iter: 2' in log_text(kept)
    assert sorted(p.name for p in kept.glob('iter_*.pth')) == [
        'iter_1.pth', 'iter_2.pth', 'iter_3.pth']
    assert {p.name: p.read_bytes()
            for p in work_dir.glob('iter_*.pth')} == new


# ----------------------------------------------------------------------------
# 3. best checkpoints
# ----------------------------------------------------------------------------


def test_killed_while_saving_a_new_best_keeps_the_old(tmp_path, data_dir):
    cfg = _classifier(tmp_path, data_dir)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir)
    old_best = next(work_dir.glob('best_*epoch_1.pth'))
    # Make epoch 2 a new best whatever its accuracy.
    ckpt = read_checkpoint(str(work_dir / 'epoch_1.pth'))
    ckpt['message_hub']['runtime_info']['best_score'] = -1.0
    torch.save(ckpt, work_dir / 'epoch_1.pth')

    run = _start(cfg, '--work-dir', work_dir, '--resume', '--cfg-options',
                 'train_cfg.max_epochs=2', MMUMAE_CKPT_SAVE_DELAY='3')
    new_tmp = work_dir / f'.{old_best.name.replace("epoch_1", "epoch_2")}.tmp'
    saving = _wait_for(new_tmp.exists, run)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert saving, 'the run never paused while saving the new best'
    assert [p.name for p in work_dir.glob('best_*.pth')] == [old_best.name]
    assert _finite(old_best)

    _train(cfg, '--work-dir', work_dir, '--resume', '--cfg-options',
           'train_cfg.max_epochs=3')
    best = [p.name for p in work_dir.glob('best_*.pth')]
    assert len(best) == 1 and best != [old_best.name]
    assert not list(work_dir.glob('.*.tmp'))


# ----------------------------------------------------------------------------
# 4. exact resume
# ----------------------------------------------------------------------------


def _losses(work_dir: Path) -> dict:
    """Iteration -> loss, from every run's scalars.json under work_dir."""
    losses = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                losses[record['step']] = record['loss']
    return losses


def test_sigterm_then_resume_repeats_the_uninterrupted_losses(
        tmp_path, data_dir):
    cfg = _mae_epochs(tmp_path, data_dir, epochs=4)
    whole = tmp_path / 'whole'
    _train(cfg, '--work-dir', whole)
    expected = _losses(whole)
    assert sorted(expected) == list(range(1, 13))

    work_dir = tmp_path / 'interrupted'
    run = _start(cfg, '--work-dir', work_dir)
    saved = _wait_for((work_dir / 'epoch_1.pth').exists, run)
    run.send_signal(signal.SIGTERM)
    run.wait()
    assert saved and not (work_dir / 'epoch_4.pth').exists()
    _train(cfg, '--work-dir', work_dir, '--resume')
    resumed = re.search(r'resumed epoch: (\d+), iter: (\d+)',
                        log_text(work_dir))
    start = int(resumed.group(2))
    assert int(resumed.group(1)) >= 1 and start < 12
    got = _losses(work_dir)
    assert sorted(got)[-1] == 12
    for step in range(start + 1, 13):
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step


def test_resume_with_loader_workers_repeats_the_losses(tmp_path, data_dir):
    """Two loader workers started afresh each epoch (the shipped configs'
    persistent_workers=False): a run resumed after epoch 1 repeats the
    uninterrupted losses. Persistent workers get a warning."""
    cfg = _mae_epochs(tmp_path, data_dir, epochs=3)
    workers = ['--cfg-options', 'train_dataloader.num_workers=2']
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    _train(cfg, '--work-dir', whole, *workers)
    _train(cfg, '--work-dir', part, *workers, 'train_cfg.max_epochs=1')
    _train(cfg, '--work-dir', part, '--resume', *workers)
    expected, got = _losses(whole), _losses(part)
    assert sorted(got) == sorted(expected) == list(range(1, 10))
    for step in range(4, 10):
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step
    assert 'persistent_workers=True' not in log_text(part)
    _train(cfg, '--work-dir', tmp_path / 'persistent', *workers,
           'train_dataloader.persistent_workers=True',
           'train_cfg.max_epochs=1')
    assert 'train_dataloader.persistent_workers=True (with 2 workers): the ' \
        'workers keep their random state from epoch to epoch, so a ' \
        'resumed run will not repeat the losses of an uninterrupted one' \
        in log_text(tmp_path / 'persistent')


def test_iteration_checkpoints_in_an_epoch_run_are_refused(tmp_path,
                                                           data_dir):
    cfg = _mae_epochs(tmp_path, data_dir, epochs=4)
    message = _error(train_tool, cfg, '--work-dir', tmp_path / 'wd',
                     '--cfg-options',
                     'default_hooks.checkpoint.by_epoch=False',
                     'default_hooks.checkpoint.interval=2')
    assert 'saves by iteration (by_epoch=False) in an epoch-based loop' \
        in message
    assert not list((tmp_path / 'wd').glob('*.pth'))

    # A checkpoint saved without the epoch-end record (an older runsafe, or
    # exact_resume=None) from inside an epoch (3 iterations each) is not
    # resumed either: its iteration is not its epoch x 3.
    work_dir = tmp_path / 'mid'
    _train(cfg, '--work-dir', work_dir, '--cfg-options',
           'train_cfg.max_epochs=1')
    ckpt = read_checkpoint(str(work_dir / 'epoch_1.pth'))
    assert ckpt['meta'].pop('exact_resume')['epoch_end'] is True
    ckpt['meta']['iter'] = 2
    torch.save(ckpt, work_dir / 'epoch_1.pth')
    message = _error(train_tool, cfg, '--work-dir', work_dir, '--resume')
    assert 'was saved at iteration 2, inside epoch 1 (3 iterations per ' \
        'epoch in the run that saved it' in message


class SaveEveryIterationHook(Hook):
    """Saves ``mid_<iteration>.pth`` after every iteration, as a hook of
    one's own that saves on its own schedule does."""
    priority = 'NORMAL'  # before ExactResumeHook notes an epoch's end

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        runner.save_checkpoint(runner.work_dir, f'mid_{runner.iter + 1}.pth',
                               by_epoch=False,
                               backend_args=dict(backend='atomic_local'))


HOOKS.register_module(module=SaveEveryIterationHook, force=True)


def test_every_checkpoint_inside_an_epoch_is_refused(tmp_path, data_dir):
    """Saved after each of the 6 iterations of 2 epochs: each is refused,
    named by where it was saved, also the one saved after an epoch's last
    iteration but before the epoch was counted; the epoch ends resume."""
    cfg = _mae_epochs(tmp_path, data_dir, epochs=2)
    with open(cfg, 'a') as f:
        f.write("custom_hooks = [dict(type='SaveEveryIterationHook')]\n")
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir)
    for step in range(1, 7):
        mid = work_dir / f'mid_{step}.pth'
        message = _error(train_tool, cfg, '--work-dir', work_dir, '--resume',
                         mid)
        epoch, done = (step - 1) // 3 + 1, (step - 1) % 3 + 1
        assert f'resume: {mid} was saved inside epoch {epoch}, after ' \
            f'{done} of its 3 iterations (iteration {step})' in message
    for epoch in (1, 2):
        _train(cfg, '--work-dir', work_dir, '--resume',
               work_dir / f'epoch_{epoch}.pth')
        assert f'resumed epoch: {epoch}, iter: {3 * epoch}' in log_text(
            work_dir)


def test_resume_with_another_batch_size_continues(tmp_path, data_dir):
    """epoch_2.pth of a run at 3 iterations per epoch resumes at 2 per
    epoch (another batch size, or number of processes), with a warning;
    so does a checkpoint saved without the epoch-end record."""
    cfg = _mae_epochs(tmp_path, data_dir, epochs=2)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir)
    ckpt = read_checkpoint(str(work_dir / 'epoch_2.pth'))
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (2, 6)
    del ckpt['meta']['exact_resume']
    torch.save(ckpt, tmp_path / 'unrecorded.pth')
    warning = ('was saved at the end of epoch 2 by a run with other settings '
               '(iters per epoch 3 -> 2{}): training continues with epoch '
               '3, but does not repeat the uninterrupted run exactly')
    for ckpt, extra in ((work_dir / 'epoch_2.pth', ', batch size 2 -> 3'),
                        (tmp_path / 'unrecorded.pth', '')):
        before = len(log_text(work_dir))
        _train(cfg, '--work-dir', work_dir, '--resume', ckpt,
               '--cfg-options', 'train_dataloader.batch_size=3',
               'train_cfg.max_epochs=3')
        log = log_text(work_dir)[before:]
        assert f'{ckpt} ' + warning.format(extra) in log
        assert 'resumed epoch: 2, iter: 6' in log
        meta = read_checkpoint(str(work_dir / 'epoch_3.pth'))['meta']
        assert (meta['epoch'], meta['iter']) == (3, 8)


def test_resume_after_the_rollbacks_are_used_up(tmp_path, data_dir):
    # lr x1e33 after iteration 4 and again after 7 (by the scheduler's
    # count): the first blow-up rolls back to epoch_1.pth; the epochs saved
    # after it count fewer iterations than 3 per epoch; the second stops the
    # run, advising --resume, which continues from the newest of them.
    cfg = _mae_epochs(tmp_path, data_dir, epochs=4)
    with open(cfg, 'a') as f:
        f.write("param_scheduler = [dict(type='MultiStepLR', by_epoch=False, "
                "milestones=[4, 7], gamma=1e33)]\n")
    work_dir = tmp_path / 'wd'
    rollback = ['--cfg-options', 'default_hooks.finite_loss.rollbacks=1',
                'default_hooks.finite_loss.rollback_lr_factor=1e-33']
    message = _error(train_tool, cfg, '--work-dir', work_dir, *rollback)
    assert re.search(r'non-finite loss at iteration \d+ \(epoch [34]\)',
                     message) and '--resume' in message
    assert f'Rolled back to {work_dir / "epoch_1.pth"}' in log_text(work_dir)
    newest = max(work_dir.glob('epoch_*.pth'))
    meta = read_checkpoint(str(newest))['meta']
    assert meta['iter'] < 3 * meta['epoch']  # not epoch x iterations
    _train(cfg, '--work-dir', work_dir, '--resume', *rollback)
    log = log_text(work_dir)
    assert f'resumed epoch: {meta["epoch"]}, iter: {meta["iter"]}' in log
    assert f'Rolled back to {newest}' in log  # a rollback resumes it too
    assert _finite(work_dir / 'epoch_4.pth')


# ----------------------------------------------------------------------------
# 5. disk full
# ----------------------------------------------------------------------------


def test_disk_full_names_the_file_and_removes_the_partial(tmp_path,
                                                          data_dir):
    cfg = _mae_iters(tmp_path, data_dir, max_iters=2, keep=1)
    work_dir = tmp_path / 'wd'
    work_dir.mkdir()
    partial = work_dir / '.iter_2.pth.tmp'
    partial.symlink_to('/dev/full')  # the kernel answers ENOSPC
    message = _error(train_tool, cfg, '--work-dir', work_dir)
    assert re.search(
        rf'cannot save {re.escape(str(work_dir))}/iter_2.pth: No space left '
        rf'on device \([0-9.]+ MiB free in {re.escape(str(work_dir))}, '
        r'[0-9.]+ MiB needed\)', message), message
    assert not os.path.lexists(partial)
    assert [p.name for p in work_dir.glob('iter_*.pth')] == ['iter_1.pth']
    assert _pointer(work_dir) == 'iter_1.pth' and _finite(
        work_dir / 'iter_1.pth')


# ----------------------------------------------------------------------------
# 6. one reader, everywhere; init_cfg and load_from adapt alike
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('content', [os.urandom(2048), b'text\n' * 50, b''],
                         ids=['random', 'text', 'empty'])
def test_init_cfg_answers_not_a_checkpoint(tmp_path, data_dir, content):
    bad = tmp_path / 'backbone.pth'
    bad.write_bytes(content)
    cfg = _classifier(tmp_path, data_dir)
    message = _error(
        train_tool, cfg, '--work-dir', tmp_path / 'wd', '--cfg-options',
        'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={bad}')
    assert re.fullmatch(rf'error: not a checkpoint file: {re.escape(str(bad))}'
                        r' \(.+\)', message), message


def test_missing_backbone_init_checkpoint_is_one_line(tmp_path, data_dir):
    cfg = _classifier(tmp_path, data_dir)
    message = _error(
        train_tool, cfg, '--work-dir', tmp_path / 'wd', '--cfg-options',
        'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={tmp_path / "nowhere.pth"}')
    assert message == f'error: checkpoint not found: {tmp_path}/nowhere.pth'


def _model_state(cfg: Path, **backbone) -> dict:
    from mmengine.config import Config
    model_cfg = Config.fromfile(cfg).model
    model_cfg.backbone.update(backbone)
    return MODELS.build(model_cfg).state_dict()


def test_load_from_resizes_pos_embed_like_init_cfg(tmp_path, data_dir):
    """A ViT saved at 64 px loads into the 32-px model through mmpretrain's
    load_state_dict pre-hook, on the load_from path too."""
    cfg = _classifier(tmp_path, data_dir)
    state = _model_state(cfg, img_size=64)
    assert state['backbone.pos_embed'].shape[1] == 65
    ckpt = tmp_path / 'at64.pth'
    torch.save(dict(meta=dict(), state_dict=state), ckpt)
    test_tool.main([str(cfg), str(ckpt), '--work-dir', str(tmp_path / 't')])
    log = log_text(tmp_path / 't')
    assert 'Resize the pos_embed shape from torch.Size([1, 65, 32]) to ' \
        'torch.Size([1, 17, 32])' in log
    assert 'accuracy/top1' in log


# ----------------------------------------------------------------------------
# Pinned: what users depend on
# ----------------------------------------------------------------------------


def test_resume_picks_epoch_10_after_epoch_9(tmp_path, data_dir):
    from mmengine.logging import MMLogger

    from runsafe import newest_loadable_checkpoint
    state = dict(state_dict=dict(w=torch.ones(1)))
    for n in (8, 9, 10):
        torch.save(state, tmp_path / f'epoch_{n}.pth')
    logger = MMLogger.get_instance('mmumae_test_resume_order')
    assert newest_loadable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'epoch_10.pth')
    (tmp_path / 'epoch_10.pth').write_bytes(b'')  # damaged: the next one
    assert newest_loadable_checkpoint(str(tmp_path), logger) == str(
        tmp_path / 'epoch_9.pth')


def test_load_from_refuses_extra_keys_only(tmp_path, data_dir):
    cfg = _classifier(tmp_path, data_dir)
    state = _model_state(cfg)
    state['head.extra.weight'] = torch.ones(3)
    ckpt = tmp_path / 'extra.pth'
    torch.save(dict(meta=dict(), state_dict=state), ckpt)
    message = _error(test_tool, cfg, ckpt, '--work-dir', tmp_path / 't')
    assert f'{ckpt} does not fit the model (1 keys; 1 unexpected: ' \
        'head.extra.weight)' in message


def test_ddp_module_prefix_loads(tmp_path, data_dir):
    cfg = _classifier(tmp_path, data_dir)
    state = {f'module.{k}': v for k, v in _model_state(cfg).items()}
    ckpt = tmp_path / 'ddp.pth'
    torch.save(dict(meta=dict(), state_dict=state), ckpt)
    metrics = test_tool.main([str(cfg), str(ckpt), '--work-dir',
                              str(tmp_path / 't')])
    assert 'accuracy/top1' in metrics


def test_allow_partial_load_never_applies_to_resume(tmp_path, data_dir):
    cfg = _mae_iters(tmp_path, data_dir, max_iters=1)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir)
    ckpt = read_checkpoint(str(work_dir / 'iter_1.pth'))
    del ckpt['state_dict']['backbone.cls_token']
    other = tmp_path / 'other.pth'
    torch.save(ckpt, other)
    message = _error(train_tool, cfg, '--work-dir', work_dir, '--resume',
                     other, '--allow-partial-load', '--cfg-options',
                     'train_cfg.max_iters=2')
    assert f'resume: {other} belongs to another model (1 missing: ' \
        'backbone.cls_token)' in message


@pytest.mark.parametrize('wrap', ['RepeatDataset', 'ConcatDataset'])
def test_data_checks_look_inside_wrapped_datasets(tmp_path, data_dir, wrap):
    cfg = _classifier(tmp_path, data_dir)
    missing = tmp_path / 'missing'
    inner = (f"dict(type='CustomDataset', data_root='{missing}', "
             "pipeline=train_dataloader['dataset']['pipeline'])")
    wrapped = (f"dict(type='RepeatDataset', times=2, dataset={inner})"
               if wrap == 'RepeatDataset' else
               "dict(type='ConcatDataset', datasets=["
               f"train_dataloader['dataset'], {inner}])")
    with open(cfg, 'a') as f:
        f.write(f'train_dataloader.update(dataset={wrapped})\n')
    message = _error(train_tool, cfg, '--work-dir', tmp_path / 'wd')
    assert f"train_dataloader: '{missing}' does not exist" in message


def test_skipping_in_training_never_skips_in_test(tmp_path, data_dir):
    """ignore_empty on the training loader leaves the test loader strict."""
    (tmp_path / 'data').mkdir()
    data = write_image_folders(tmp_path / 'data', {'a': 3}, (40, 48))
    bad = data / 'a' / 'zero.jpg'
    bad.write_bytes(b'')
    cfg = _classifier(tmp_path, data)
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(meta=dict(), state_dict=_model_state(cfg)), ckpt)
    message = _error(test_tool, cfg, ckpt, '--work-dir', tmp_path / 't',
                     '--cfg-options',
                     'train_dataloader.dataset.pipeline.0.ignore_empty=True')
    assert f'cannot read image {bad}: 0 bytes' in message


def test_missing_val_annotation_file_is_one_line(tmp_path, data_dir):
    cfg = _classifier(tmp_path, data_dir)
    message = _error(train_tool, cfg, '--work-dir', tmp_path / 'wd',
                     '--cfg-options',
                     'val_dataloader.dataset.ann_file=meta/val.txt')
    assert f"val_dataloader: '{data_dir}/meta/val.txt' does not exist" \
        in message


def test_read_checkpoint_error_is_what_every_entry_says(tmp_path, data_dir):
    """The resume and test entries answer like read_checkpoint."""
    bad = tmp_path / 'model.pth'
    bad.write_bytes(b'\x00' * 100)
    with pytest.raises(RunError) as info:
        read_checkpoint(str(bad))
    cfg = _classifier(tmp_path, data_dir)
    for tool, args in ((test_tool, [cfg, bad]),
                       (train_tool, [cfg, '--resume', bad])):
        assert _error(tool, *args, '--work-dir', tmp_path / 'w') == \
            f'error: {info.value}'
