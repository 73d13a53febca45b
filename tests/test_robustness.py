"""Crash-safe checkpoints and strict, clear-failing loading.

Each test runs tools/train.py or tools/test.py with a real mmengine Runner
(``SafeRunner`` through the shared runtime) on a tiny stock mmpretrain model
and a few random JPEGs: in-process through the tools' ``main`` where only
the outcome matters, as a subprocess where the run is killed.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import RUNNERS
from mmpretrain.registry import MODELS
from tool_helpers import (CLASSIFIER_MODEL, MAE_ITERS, REPO, RUNTIME,
                          load_tool, log_text, mae_model, tool_error,
                          write_image_folders)

from runsafe import RunError, read_checkpoint

train_tool = load_tool(REPO / 'tools' / 'train.py', 'mmumae_robust_train')
test_tool = load_tool(REPO / 'tools' / 'test.py', 'mmumae_robust_test')

CLASSIFIER_TEST = CLASSIFIER_MODEL + """test_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root='{data}',
                 pipeline=[dict(type='SafeLoadImageFromFile'),
                           dict(type='Resize', scale=32),
                           dict(type='PackInputs')]))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
"""


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> Path:
    return write_image_folders(tmp_path_factory.mktemp('data'),
                               {'a': 6, 'b': 2}, (40, 48))


def _mae_cfg(tmp_path: Path, data_dir: Path, keep: int = 1) -> Path:
    path = tmp_path / 'mae_tiny.py'
    path.write_text(
        MAE_ITERS.format(runtime=RUNTIME, model=mae_model(data_dir),
                         max_iters=1, interval=1, keep=keep))
    return path


def _train(*args) -> None:
    train_tool.main([str(a) for a in args])


_error = tool_error  # the one line a tool stops with


def _iters(work_dir: Path) -> list:
    return sorted(p.name for p in work_dir.glob('iter_*.pth'))


def _pointer(work_dir: Path) -> str:
    return Path((work_dir / 'last_checkpoint').read_text().strip()).name


# ----------------------------------------------------------------------------
# 1. crash-safe checkpoints
# ----------------------------------------------------------------------------


def test_killed_while_saving_then_resume(tmp_path, data_dir):
    cfg = _mae_cfg(tmp_path, data_dir, keep=1)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir)
    assert _iters(work_dir) == ['iter_1.pth']

    # Resume towards iteration 2 with a save that pauses before it is
    # complete; SIGKILL the run in that pause.
    env = dict(os.environ, MMUMAE_CKPT_SAVE_DELAY='120', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(
        [sys.executable, str(REPO / 'tools' / 'train.py'), str(cfg),
         '--work-dir', str(work_dir), '--resume', '--cfg-options',
         'train_cfg.max_iters=2'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = work_dir / '.iter_2.pth.tmp'
    deadline = time.time() + 120
    while not partial.exists() and proc.poll() is None and \
            time.time() < deadline:
        time.sleep(0.2)
    saving = partial.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert saving, 'the run never paused in the middle of a save'

    # The previous checkpoint is still there, complete, and named.
    assert _iters(work_dir) == ['iter_1.pth']
    assert _pointer(work_dir) == 'iter_1.pth'
    ckpt = read_checkpoint(str(work_dir / 'iter_1.pth'))
    assert ckpt['meta']['iter'] == 1

    _train(cfg, '--work-dir', work_dir, '--resume', '--cfg-options',
           'train_cfg.max_iters=3')
    log = log_text(work_dir)
    assert 'resumed epoch: 0, iter: 1' in log
    assert _iters(work_dir) == ['iter_3.pth']  # max_keep_ckpts=1
    assert _pointer(work_dir) == 'iter_3.pth'
    assert not list(work_dir.glob('.*.tmp'))
    ckpt = read_checkpoint(str(work_dir / 'iter_3.pth'))
    assert ckpt['meta']['iter'] == 3


def test_resume_falls_back_to_newest_loadable(tmp_path, data_dir):
    cfg = _mae_cfg(tmp_path, data_dir, keep=3)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir, '--cfg-options',
           'train_cfg.max_iters=2')
    newest = work_dir / 'iter_2.pth'
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2])  # a torn write

    _train(cfg, '--work-dir', work_dir, '--resume', '--cfg-options',
           'train_cfg.max_iters=3')
    log = log_text(work_dir)
    assert f'not a checkpoint file: {newest}' in log
    assert f'resuming from {work_dir / "iter_1.pth"}' in log
    assert 'resumed epoch: 0, iter: 1' in log
    assert read_checkpoint(str(work_dir / 'iter_3.pth'))['meta']['iter'] == 3

    # The file last_checkpoint names is gone (deleted by hand, a disk that
    # filled up): the next newest is used.
    assert _pointer(work_dir) == 'iter_3.pth'
    (work_dir / 'iter_3.pth').unlink()
    before = len(log_text(work_dir))
    _train(cfg, '--work-dir', work_dir, '--resume', '--cfg-options',
           'train_cfg.max_iters=3')
    log = log_text(work_dir)[before:]
    assert f'checkpoint not found: {work_dir / "iter_3.pth"}' in log
    assert 'resumed epoch: 0, iter: 2' in log
    assert _iters(work_dir) == ['iter_1.pth', 'iter_2.pth', 'iter_3.pth']

    # Nothing loadable: stop, naming every file tried.
    for path in work_dir.glob('iter_*.pth'):
        path.write_text('not a checkpoint\n')
    message = _error(train_tool, cfg, '--work-dir', work_dir, '--resume')
    assert 'no loadable checkpoint' in message
    for name in ('iter_1.pth', 'iter_2.pth', 'iter_3.pth'):
        assert str(work_dir / name) in message


# ----------------------------------------------------------------------------
# 2, 3, 7. strict loading; files that are not checkpoints
# ----------------------------------------------------------------------------


def _classifier(tmp_path: Path, data_dir: Path) -> Path:
    path = tmp_path / 'cls_tiny.py'
    path.write_text(CLASSIFIER_TEST.format(runtime=RUNTIME, data=data_dir))
    return path


def _wrong_arch_checkpoint(cfg_path: Path, out: Path) -> Path:
    """Weights of the same classifier with 48 instead of 32 channels."""
    cfg = Config.fromfile(cfg_path)
    cfg.model.backbone.arch.embed_dims = 48
    cfg.model.head.in_channels = 48
    torch.manual_seed(0)
    state = MODELS.build(cfg.model).state_dict()
    torch.save(dict(meta=dict(), state_dict=state), out)
    return out


def test_test_tool_refuses_a_wrong_arch_checkpoint(tmp_path, data_dir):
    cfg = _classifier(tmp_path, data_dir)
    ckpt = _wrong_arch_checkpoint(cfg, tmp_path / 'wide.pth')
    work_dir = tmp_path / 'test'
    message = _error(test_tool, cfg, ckpt, '--work-dir', work_dir)
    assert f'{ckpt} does not fit the model' in message
    assert 'backbone.cls_token: [1, 1, 48] in the checkpoint vs [1, 1, 32] ' \
        'in the model' in message
    assert '--allow-partial-load' in message
    assert not list(work_dir.glob('*/*.json'))  # no metric was written

    # Explicitly allowed: the tensors that fit load, loudly.
    metrics = test_tool.main([str(cfg), str(ckpt), '--work-dir',
                              str(work_dir), '--allow-partial-load'])
    assert set(metrics) == {'accuracy/top1'}
    assert 'PARTIAL LOAD (allow_partial_load=True) of ' + str(ckpt) in \
        log_text(work_dir)


def test_load_from_a_wrong_arch_checkpoint_stops(tmp_path, data_dir):
    cfg = _mae_cfg(tmp_path, data_dir)
    other = _classifier(tmp_path, data_dir)
    ckpt = _wrong_arch_checkpoint(other, tmp_path / 'cls.pth')
    message = _error(train_tool, cfg, '--work-dir', tmp_path / 'wd',
                     '--cfg-options', f'load_from={ckpt}')
    assert 'does not fit the model' in message
    # A classifier's head is not in MAE; MAE's decoder is not in the file.
    assert 'unexpected: ' in message and 'head.layers.head.weight' in message
    assert 'missing: ' in message and 'neck.' in message
    assert not _iters(tmp_path / 'wd')


def test_resume_after_changing_the_model_stops(tmp_path, data_dir):
    cfg = _mae_cfg(tmp_path, data_dir)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir)
    message = _error(
        train_tool, cfg, '--work-dir', work_dir, '--resume',
        '--cfg-options', 'train_cfg.max_iters=2',
        'model.backbone.arch.embed_dims=48', 'model.neck.embed_dim=48')
    assert f'resume: {work_dir / "iter_1.pth"} belongs to another model' \
        in message
    assert 'backbone.pos_embed: [1, 17, 32] in the checkpoint vs ' \
        '[1, 17, 48] in the model' in message
    assert _iters(work_dir) == ['iter_1.pth']  # untouched


def test_resuming_another_configs_run_names_it(tmp_path, demo_data):
    """A PVT config resumed in a Swin config's work dir is refused, naming
    the other model."""
    overrides = [
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
        'train_dataloader.dataset.indices=2', 'custom_hooks=[]'
    ]
    work_dir = tmp_path / 'swin'
    _train(REPO / 'configs/ummae/ummae_swin-mini_demo.py', '--work-dir',
           work_dir, '--cfg-options', *overrides)
    assert (work_dir / 'epoch_1.pth').is_file()
    message = _error(train_tool, REPO / 'configs/ummae/ummae_pvt-mini_demo.py',
                     '--work-dir', work_dir, '--resume', '--cfg-options',
                     *overrides)
    assert 'belongs to another model' in message
    assert 'parameter groups' not in message


@pytest.mark.parametrize('content', [
    os.urandom(4096), b'hello, this is a text file\n' * 10, b''
], ids=['random', 'text', 'empty'])
def test_not_a_checkpoint_file(tmp_path, data_dir, content):
    cfg = _classifier(tmp_path, data_dir)
    bad = tmp_path / 'model.pth'
    bad.write_bytes(content)
    for tool, args in ((test_tool, [cfg, bad]),
                       (train_tool, [_mae_cfg(tmp_path, data_dir),
                                     '--resume', bad])):
        message = _error(tool, *args, '--work-dir', tmp_path / 'wd')
        assert f'not a checkpoint file: {bad}' in message
        assert 'weights_only' not in message
        assert 'KeyError' not in message


def test_read_checkpoint_formats(tmp_path):
    """What counts as a checkpoint, in-process."""
    weights = dict(w=torch.ones(2, 3))
    legacy = tmp_path / 'legacy.pth'
    torch.save(dict(state_dict=weights), legacy,
               _use_new_zipfile_serialization=False)
    assert read_checkpoint(str(legacy))['state_dict']['w'].sum() == 6
    bare = tmp_path / 'bare.pth'
    torch.save(weights, bare)  # a plain state dict, as timm writes
    assert set(read_checkpoint(str(bare))) == {'w'}

    tensor = tmp_path / 'tensor.pth'
    torch.save(torch.ones(3), tensor)
    with pytest.raises(RunError, match='holds a Tensor without model'):
        read_checkpoint(str(tensor))
    foreign = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict=weights, extra=Path('x')), foreign)
    with pytest.raises(RunError, match='holds Python objects other than'):
        read_checkpoint(str(foreign))


def test_missing_checkpoint(tmp_path, data_dir):
    cfg = _classifier(tmp_path, data_dir)
    message = _error(test_tool, cfg, tmp_path / 'nowhere.pth', '--work-dir',
                     tmp_path / 'wd')
    assert f'checkpoint not found: {tmp_path / "nowhere.pth"}' in message


# ----------------------------------------------------------------------------
# 6. no silent overwrite
# ----------------------------------------------------------------------------


def test_earlier_run_is_not_overwritten(tmp_path, data_dir):
    cfg = _mae_cfg(tmp_path, data_dir, keep=3)
    work_dir = tmp_path / 'wd'
    _train(cfg, '--work-dir', work_dir, '--cfg-options',
           'train_cfg.max_iters=2')
    before = {p.name: p.read_bytes() for p in work_dir.glob('iter_*.pth')}
    dumped = (work_dir / 'mae_tiny.py').read_bytes()  # max_iters=2

    message = _error(train_tool, cfg, '--work-dir', work_dir)
    assert 'holds checkpoints of an earlier run' in message
    assert '--resume' in message and '--overwrite' in message
    assert {p.name: p.read_bytes()
            for p in work_dir.glob('iter_*.pth')} == before
    # the refused run did not replace the earlier run's dumped config
    assert (work_dir / 'mae_tiny.py').read_bytes() == dumped

    _train(cfg, '--work-dir', work_dir, '--overwrite')
    kept = list(work_dir.glob('previous_*'))
    assert len(kept) == 1
    assert {p.name: p.read_bytes()
            for p in kept[0].glob('iter_*.pth')} == before
    # the earlier config moved with its checkpoints; the new run's is dumped
    assert (kept[0] / 'mae_tiny.py').read_bytes() == dumped
    assert (work_dir / 'mae_tiny.py').read_bytes() != dumped
    assert _iters(work_dir) == ['iter_1.pth']  # the new run's
    assert _pointer(work_dir) == 'iter_1.pth'


# ----------------------------------------------------------------------------
# --auto-scale-lr counts gradient accumulation
# ----------------------------------------------------------------------------


def _built_lr(cfg: Config) -> tuple:
    """The lr the optimizer gets as ``Runner.train()`` builds it."""
    runner = RUNNERS.build(cfg)
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(wrapper, runner.auto_scale_lr)
    assert isinstance(wrapper, OptimWrapper)
    return wrapper.optimizer.param_groups[0]['lr'], wrapper


def test_auto_scale_lr_counts_accumulation(tmp_path, demo_data):
    path = sorted((REPO / 'configs' / 'simmim').glob('simmim_swin-*accum8*'))
    assert path, 'no SimMIM Swin config with accumulation'
    path = str(path[0])
    lrs = {}
    for flag in ([], ['--auto-scale-lr']):
        args = train_tool.parse_args(
            [path, '--work-dir', str(tmp_path / str(len(flag))), *flag])
        cfg = Config.fromfile(path)
        cfg.train_dataloader.dataset.data_root = str(demo_data / 'imagenet')
        train_tool.merge_args(cfg, args)
        lrs[bool(flag)], wrapper = _built_lr(cfg)
    base = Config.fromfile(path)
    assert base.optim_wrapper.accumulative_counts == 8
    assert lrs[False] == pytest.approx(base.optim_wrapper.optimizer.lr)
    # One process x 64 images x 8 accumulated steps = 512 of 4096.
    total = base.train_dataloader.batch_size * 8
    assert base.auto_scale_lr.base_batch_size == 4096 and total == 512
    assert lrs[True] == pytest.approx(lrs[False] * total / 4096)


# ----------------------------------------------------------------------------
# Every shipped config inherits all of it
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('path', sorted(
    str(p.relative_to(REPO))
    for folder in ('ummae', 'simmim', 'finetune', 'mmdet', 'mmseg')
    for p in (REPO / 'configs' / folder).glob('*.py')))
def test_shipped_configs_use_the_safe_runtime(path):
    cfg = Config.fromfile(REPO / path)
    assert cfg.runner_type == 'SafeRunner'
    hooks = cfg.default_hooks
    assert hooks.checkpoint.type == 'CheckpointHook'
    assert hooks.checkpoint.backend_args == dict(backend='atomic_local')
    assert 'runsafe' in cfg.custom_imports.imports
    assert [hooks[k].type for k in (
        'work_dir', 'strict_load', 'finite_loss', 'exact_resume')] == [
            'WorkDirHook', 'StrictLoadHook', 'FiniteLossHook',
            'ExactResumeHook']
    # every image loader of mmpretrain's pipelines names the bad file
    if cfg.default_scope == 'mmpretrain':
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(key):
                assert cfg[key].dataset.pipeline[0].type == \
                    'SafeLoadImageFromFile'
    # Minutes, not torch's 30-minute default.
    assert 60 <= cfg.env_cfg.dist_cfg.timeout <= 900
    _assert_exact_resume(cfg)


def _assert_exact_resume(cfg: Config) -> None:
    """An epoch-based training loader that a resume repeats exactly: its
    workers start afresh each epoch (persistent workers keep their random
    state across epochs, so a resumed run would draw other augmentations)."""
    loop = cfg.train_cfg.get('type', 'EpochBasedTrainLoop')
    if loop == 'IterBasedTrainLoop' or cfg.train_cfg.get('by_epoch') is False:
        return
    loader = cfg.train_dataloader
    assert not loader.num_workers or loader.persistent_workers is False


@pytest.mark.parametrize('path', sorted(
    str(p.relative_to(REPO))
    for p in (REPO / 'configs' / 'studies').rglob('*.py')
    if not p.name.startswith('study_')))
def test_study_configs_resume_exactly(path):
    _assert_exact_resume(Config.fromfile(REPO / path))


# ----------------------------------------------------------------------------
# Two runs in one process within the same second
# ----------------------------------------------------------------------------


def test_runs_in_the_same_second_log_to_their_own_work_dirs(
        tmp_path, data_dir, monkeypatch):
    """mmengine keys the logger by ``<config>_<timestamp>`` (seconds): a
    second run in the same second used to log into the first's work dir."""
    import mmengine.runner.runner as mmengine_runner
    monkeypatch.setattr(mmengine_runner.time, 'strftime',
                        lambda fmt, t=None: '20260101_000000')
    cfg = _mae_cfg(tmp_path, data_dir)
    for name in ('first', 'second'):
        _train(cfg, '--work-dir', tmp_path / name)
    first, second = log_text(tmp_path / 'first'), log_text(tmp_path / 'second')
    assert str(tmp_path / 'second') not in first
    assert f'Checkpoints will be saved to {tmp_path / "second"}' in second
    assert (tmp_path / 'second' / '20260101_000000' /
            '20260101_000000.log').is_file()
