"""tools/train.py and tools/test.py, end to end on the CPU.

Each end-to-end test runs a tool as a subprocess (the way users run it)
with a real mmengine Runner, a tiny stock mmpretrain model (MAE ViT with one
32-dim layer on 32-px images, or a ViT classifier) and a few random JPEGs in
CustomDataset folder format written to a temporary directory. The command-
line semantics are also checked in-process on the config, without a Runner.
"""
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from tool_helpers import (CLASSIFIER_MODEL, MAE_ITERS, REPO, RUNTIME,
                          load_tool, log_text, mae_model, write_image_folders)

from runsafe import fp32_without_gpu

TRAIN = REPO / 'tools' / 'train.py'
TEST = REPO / 'tools' / 'test.py'
SCHEDULE_200E = (
    REPO / 'configs' / '_base_' / 'schedules' / 'ummae_adamw_coslr-200e.py')
HAS_GPU = torch.cuda.is_available()
FALLBACK_WARNING = 'falling back to OptimWrapper in fp32'
# MAE_ITERS: 2 iterations, a checkpoint every 2, all kept.
ITERS_2 = dict(max_iters=2, interval=2, keep=-1)

# Class 'a' has 6 images, class 'b' 2: a classifier that always answers 'b'
# scores exactly 25% top-1, one that always answers 'a' 75%.
CLASS_SIZES = {'a': 6, 'b': 2}

# The shared pre-training schedule as is (AmpOptimWrapper), one epoch.
MAE_PAPER_SCHEDULE = """
_base_ = ['{runtime}', '{schedule}']
{model}
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
"""

CLASSIFIER = CLASSIFIER_MODEL + """_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=32),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root='{data}',
                 pipeline=_pipeline))
test_dataloader = dict(
    batch_size=3, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root='{data}',
                 pipeline=_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.0))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False))
"""


train_tool = load_tool(TRAIN, 'mmumae_tools_train')
test_tool = load_tool(TEST, 'mmumae_tools_test')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> Path:
    return write_image_folders(tmp_path_factory.mktemp('data'),
                               CLASS_SIZES, (40, 48))


def _write(path: Path, template: str, data_dir: Path, **extra) -> Path:
    text = template.format(
        runtime=RUNTIME, schedule=SCHEDULE_200E, data=data_dir,
        model=mae_model(data_dir), **dict(ITERS_2, **extra))
    path.write_text(text)
    return path


def _run(tool: Path, *args, cwd: Path) -> str:
    """Run a tool with this interpreter; return stdout+stderr, assert rc 0."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.run([sys.executable, str(tool), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=1800)  # a loaded machine starves it
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def _last_checkpoint(work_dir: Path) -> str:
    return osp.basename((work_dir / 'last_checkpoint').read_text().strip())


# ----------------------------------------------------------------------------
# End to end (subprocess, real Runner)
# ----------------------------------------------------------------------------


def test_train_writes_checkpoint_log_and_applies_cfg_options(
        tmp_path, data_dir):
    cfg = _write(tmp_path / 'mae_tiny.py', MAE_ITERS, data_dir)
    work_dir = tmp_path / 'custom_work_dir'
    _run(TRAIN, cfg, '--work-dir', work_dir, '--cfg-options',
         'optim_wrapper.optimizer.lr=0.0123', 'train_cfg.max_iters=3',
         cwd=tmp_path)

    # --work-dir: everything went there, not to work_dirs/mae_tiny.
    assert not (tmp_path / 'work_dirs').exists()
    # --cfg-options: 3 iterations instead of 2 (checkpoints at 2 and the end)
    assert (work_dir / 'iter_2.pth').is_file()
    assert (work_dir / 'iter_3.pth').is_file()
    assert _last_checkpoint(work_dir) == 'iter_3.pth'
    log = log_text(work_dir)
    assert 'lr: 1.2300e-02' in log
    losses = re.findall(r'Iter\(train\) \[(\d)/3\].*loss: ([0-9.]+)', log)
    assert [it for it, _ in losses] == ['1', '2', '3']
    assert all(np.isfinite(float(loss)) for _, loss in losses)
    # The config as run is dumped next to the checkpoints.
    dumped = Config.fromfile(work_dir / 'mae_tiny.py')
    assert dumped.optim_wrapper.optimizer.lr == pytest.approx(0.0123)
    assert dumped.work_dir == str(work_dir)
    # The shared runtime imports mmumae and runsafe in every process.
    assert dumped.custom_imports.imports == ['mmumae', 'runsafe']
    ckpt = torch.load(work_dir / 'iter_3.pth', map_location='cpu',
                      weights_only=False)  # our own file
    assert ckpt['meta']['iter'] == 3
    assert 'backbone.layers.0.attn.qkv.weight' in ckpt['state_dict']


@pytest.mark.skipif(HAS_GPU, reason='a GPU runs AmpOptimWrapper as is')
def test_amp_schedule_falls_back_to_fp32_on_cpu(tmp_path, data_dir):
    # The paper schedule (AmpOptimWrapper, loss_scale='dynamic') unedited.
    assert Config.fromfile(SCHEDULE_200E).optim_wrapper.type == \
        'AmpOptimWrapper'
    cfg = _write(tmp_path / 'mae_tiny_amp.py', MAE_PAPER_SCHEDULE, data_dir)
    work_dir = tmp_path / 'wd'
    output = _run(TRAIN, cfg, '--work-dir', work_dir, cwd=tmp_path)

    assert FALLBACK_WARNING in output
    log = log_text(work_dir)
    assert re.search(r'WARNING - .*AmpOptimWrapper.*' + FALLBACK_WARNING,
                     log)
    # 8 images / batch 2 = one epoch of 4 iterations, then a checkpoint.
    assert 'Epoch(train) [1][4/4]' in log
    assert (work_dir / 'epoch_1.pth').is_file()
    # The dumped config is the config as written; the runner built an fp32
    # OptimWrapper from it (no loss scaler in the saved optimizer state),
    # keeping the rest of the schedule.
    dumped = Config.fromfile(work_dir / 'mae_tiny_amp.py')
    assert dumped.optim_wrapper.type == 'AmpOptimWrapper'
    ckpt = torch.load(work_dir / 'epoch_1.pth', map_location='cpu',
                      weights_only=False)  # our own file
    assert 'loss_scaler' not in ckpt['optimizer']
    assert ckpt['optimizer']['param_groups'][0]['betas'] == (0.9, 0.95)
    assert len(ckpt['optimizer']['param_groups']) > 1  # paramwise_cfg


def test_resume_continues_from_saved_iteration(tmp_path, data_dir):
    cfg = _write(tmp_path / 'mae_tiny.py', MAE_ITERS, data_dir)
    _run(TRAIN, cfg, cwd=tmp_path)  # 2 iterations into the default work dir
    work_dir = tmp_path / 'work_dirs' / 'mae_tiny'
    assert _last_checkpoint(work_dir) == 'iter_2.pth'
    first_log = log_text(work_dir)

    _run(TRAIN, cfg, '--resume', '--cfg-options', 'train_cfg.max_iters=4',
         cwd=tmp_path)
    log = log_text(work_dir)[len(first_log):]
    assert 'iter_2.pth' in log and 'resumed epoch: 0, iter: 2' in log
    trained = re.findall(r'Iter\(train\) \[(\d)/4\]', log)
    assert trained == ['3', '4']  # continued, did not start over
    assert _last_checkpoint(work_dir) == 'iter_4.pth'
    ckpt = torch.load(work_dir / 'iter_4.pth', map_location='cpu',
                      weights_only=False)  # our own file
    assert ckpt['meta']['iter'] == 4
    # Adam's step counter went on from the resumed state: 4, not 2.
    steps = {int(s['step']) for s in ckpt['optimizer']['state'].values()}
    assert steps == {4}


def test_test_tool_evaluates_the_given_checkpoint(tmp_path, data_dir):
    cfg = _write(tmp_path / 'cls_tiny.py', CLASSIFIER, data_dir)
    _run(TRAIN, cfg, '--work-dir', tmp_path / 'train', cwd=tmp_path)
    path = tmp_path / 'train' / 'iter_1.pth'
    # Edit the trained checkpoint (it keeps its optimizer and message-hub
    # state) so that the model answers class 'b' whatever the image.
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    state = ckpt['state_dict']
    state['head.layers.head.weight'].zero_()
    state['head.layers.head.bias'].copy_(torch.tensor([0.0, 5.0]))
    torch.save(ckpt, path)

    work_dir = tmp_path / 'test'
    out = tmp_path / 'preds.pkl'
    _run(TEST, cfg, path, '--work-dir', work_dir, '--out', out,
         '--cfg-options', 'test_dataloader.batch_size=4', cwd=tmp_path)

    metrics = [
        json.loads(line) for p in work_dir.glob('*/*.json')
        for line in p.read_text().splitlines()
    ]
    assert metrics[-1]['accuracy/top1'] == pytest.approx(25.0)
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == sum(CLASS_SIZES.values())
    assert {int(p['pred_label']) for p in preds} == {1}
    # --cfg-options reached the test loop: 8 images in 2 batches of 4.
    assert 'Epoch(test) [2/2]' in log_text(work_dir)


# ----------------------------------------------------------------------------
# Command-line semantics (in-process, on the config only)
# ----------------------------------------------------------------------------


def _train_args(config: str, *argv) -> Namespace:
    return train_tool.parse_args([config, *argv])


def _mae_cfg(tmp_path: Path, data_dir: Path, template: str) -> Path:
    return _write(tmp_path / 'mae_tiny.py', template, data_dir)


def test_default_work_dir_is_named_after_the_config(tmp_path, data_dir):
    path = str(_mae_cfg(tmp_path, data_dir, MAE_ITERS))
    cfg = Config.fromfile(path)
    train_tool.merge_args(cfg, _train_args(path))
    assert cfg.work_dir == osp.join('work_dirs', 'mae_tiny')
    assert cfg.launcher == 'none'

    # A work_dir written in the config wins over the default ...
    cfg = Config.fromfile(path)
    cfg.work_dir = 'from_config'
    train_tool.merge_args(cfg, _train_args(path))
    assert cfg.work_dir == 'from_config'
    # ... and --work-dir over both, also over --cfg-options.
    cfg = Config.fromfile(path)
    train_tool.merge_args(
        cfg,
        _train_args(path, '--work-dir', 'cli', '--cfg-options',
                    'work_dir=opt'))
    assert cfg.work_dir == 'cli'


def test_resume_flag_forms(tmp_path, data_dir):
    path = str(_mae_cfg(tmp_path, data_dir, MAE_ITERS))
    cfg = Config.fromfile(path)
    train_tool.merge_args(cfg, _train_args(path))
    assert cfg.resume is False and cfg.load_from is None

    cfg = Config.fromfile(path)
    train_tool.merge_args(cfg, _train_args(path, '--resume'))
    assert cfg.resume is True and cfg.load_from is None  # latest in work_dir

    cfg = Config.fromfile(path)
    train_tool.merge_args(cfg, _train_args(path, '--resume', 'x/iter_2.pth'))
    assert cfg.resume is True and cfg.load_from == 'x/iter_2.pth'


def test_auto_scale_lr_no_validate_and_local_rank(tmp_path, data_dir):
    path = str(_write(tmp_path / 'amp.py', MAE_PAPER_SCHEDULE, data_dir))
    cfg = Config.fromfile(path)
    cfg.val_dataloader = dict(batch_size=1)
    cfg.val_evaluator = dict(type='Accuracy')
    cfg.val_cfg = dict()
    args = _train_args(path, '--auto-scale-lr', '--no-validate',
                       '--local_rank', '0')
    train_tool.merge_args(cfg, args)
    assert cfg.auto_scale_lr == dict(base_batch_size=4096, enable=True)
    assert cfg.val_dataloader is None and cfg.val_evaluator is None
    assert cfg.val_cfg is None
    assert _train_args(path, '--local-rank', '3').local_rank == 3

    # A config without a reference batch size cannot be scaled.
    cfg = Config.fromfile(str(_mae_cfg(tmp_path, data_dir, MAE_ITERS)))
    with pytest.raises(ValueError, match='base_batch_size'):
        train_tool.merge_args(cfg, _train_args(path, '--auto-scale-lr'))


def test_flags_are_the_only_changes_to_the_config(tmp_path, data_dir):
    """Without flags the tool leaves the config as written (besides
    launcher and work dir); --no-pin-memory / --no-persistent-workers set
    exactly those loader keys."""
    path = str(_write(tmp_path / 'amp.py', MAE_PAPER_SCHEDULE, data_dir))
    written = Config.fromfile(path).to_dict()
    cfg = train_tool.merge_args(Config.fromfile(path), _train_args(path))
    merged = cfg.to_dict()
    assert {k for k in merged if merged[k] != written.get(k)} == {
        'launcher', 'work_dir'}
    cfg = train_tool.merge_args(
        Config.fromfile(path),
        _train_args(path, '--no-pin-memory', '--no-persistent-workers'))
    loader = dict(cfg.train_dataloader)
    assert loader.pop('pin_memory') is False
    assert loader.pop('persistent_workers') is False
    expected = dict(written['train_dataloader'])
    expected.pop('pin_memory', None)
    expected.pop('persistent_workers', None)
    assert loader == expected


def test_amp_flag_asks_for_the_amp_wrapper(tmp_path, data_dir):
    path = str(_mae_cfg(tmp_path, data_dir, MAE_ITERS))
    cfg = Config.fromfile(path)
    cfg.optim_wrapper = dict(type='OptimWrapper',
                             optimizer=dict(type='SGD', lr=1.))
    train_tool.merge_args(cfg, _train_args(path, '--amp'))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_fp32_fallback_without_gpu():
    """The runner's fp32 fall-back edits a copy: each AmpOptimWrapper entry
    (one, or one per sub-model) becomes OptimWrapper without AMP keys."""
    amp = dict(type='AmpOptimWrapper', loss_scale='dynamic', dtype='float16',
               optimizer=dict(type='AdamW', lr=1.0), clip_grad=None)
    built, messages = fp32_without_gpu(amp)
    assert built == dict(type='OptimWrapper',
                         optimizer=dict(type='AdamW', lr=1.0), clip_grad=None)
    assert amp['type'] == 'AmpOptimWrapper'  # the config is not edited
    assert len(messages) == 1 and FALLBACK_WARNING in messages[0]

    # One wrapper per sub-model (a multi-optimizer constructor).
    multi = dict(
        constructor='MyConstructor',
        generator=dict(type='AmpOptimWrapper', loss_scale=512.,
                       optimizer=dict(type='Adam', lr=1.)),
        discriminator=dict(type='OptimWrapper',
                           optimizer=dict(type='Adam', lr=1.)))
    built, messages = fp32_without_gpu(multi)
    assert built['generator']['type'] == 'OptimWrapper'
    assert 'loss_scale' not in built['generator']
    assert built['constructor'] == 'MyConstructor'
    assert len(messages) == 1

    # A config without AMP is left alone and nothing is logged.
    assert fp32_without_gpu(dict(type='OptimWrapper')) == (
        dict(type='OptimWrapper'), [])


@pytest.mark.skipif(HAS_GPU, reason='checks the CPU-only refusal')
def test_test_tool_arguments(tmp_path, data_dir):
    path = str(_write(tmp_path / 'cls_tiny.py', CLASSIFIER, data_dir))
    cfg = Config.fromfile(path)
    args = test_tool.parse_args([path, 'w.pth', '--out', 'r.pkl'])
    test_tool.merge_args(cfg, args)
    assert cfg.load_from == 'w.pth' and cfg.resume is False
    assert cfg.work_dir == osp.join('work_dirs', 'cls_tiny')
    assert [m['type'] for m in cfg.test_evaluator] == [
        'Accuracy', 'DumpResults'
    ]
    with pytest.raises(ValueError, match='.pkl'):
        test_tool.merge_args(
            Config.fromfile(path),
            test_tool.parse_args([path, 'w.pth', '--out', 'r.json']))
    # A pre-training config has nothing to test on.
    mae = str(_mae_cfg(tmp_path, data_dir, MAE_ITERS))
    with pytest.raises(ValueError, match='test_dataloader'):
        test_tool.merge_args(
            Config.fromfile(mae), test_tool.parse_args([mae, 'w.pth']))
