"""Distributed launch on the CPU: tools/dist_train.sh and tools/dist_test.sh.

The end-to-end tests start two real processes with torchrun (through the
shell scripts, the way users run them) on a gloo process group, with a real
mmengine Runner, a tiny UM-MAE (``UMMAE`` + ``UMSwinTransformer``) or a tiny
stock ViT classifier, and a few random JPEGs in CustomDataset folder format.
``CUDA_VISIBLE_DEVICES`` is emptied so the CPU path is tested on any machine.

That both ranks took part is read from what rank 0 wrote: mmengine's
runtime environment (``Distributed training: True``, ``GPU number: 2``, the
world size), and the length of an epoch: the distributed sampler gives each
rank half the images, so N images at batch b make ceil(N / (2 b))
iterations instead of ceil(N / b); at test time the metric covers the
images of both ranks.

The runner's CPU set-up (``SafeRunner.setup_env``) is also checked
in-process.
"""
import math
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from tool_helpers import (CLASSIFIER_MODEL, REPO, RUNTIME, folder_loader,
                          log_text, write_image_folders)

from runsafe import RunError, SafeRunner, has_gpu, read_checkpoint

DIST_TRAIN = REPO / 'tools' / 'dist_train.sh'
DIST_TEST = REPO / 'tools' / 'dist_test.sh'
NPROC = 2
TIMEOUT_S = 150  # per launch; one takes ~15 s on 2 CPU cores
# mmengine's launcher, with the backend set in the config.
GLOO = 'env_cfg.dist_cfg.backend=gloo'

# 10 images. Training at batch 2: 3 iterations per epoch on 2 ranks (5 on
# one). Testing with a model that always answers 'b': 30% top-1 over all 10
# images; rank 0 alone (images 0, 2, 4, 6, 8 of the sorted list: a0, a2, a4,
# a6, b1) would score 20%.
CLASS_SIZES = {'a': 7, 'b': 3}
NUM_IMAGES = sum(CLASS_SIZES.values())
TRAIN_BATCH = 2
TEST_BATCH = 3

# Between loading and packing: 64-px crops and UM-MAE masks.
UMMAE_STEPS = """dict(type='RandomResizedCrop', scale=64,
                 crop_ratio_range=(0.2, 1.0)),
            dict(type='RandomFlip', prob=0.5),
            dict(type='UniformMaskGenerator', input_size=64,
                 mask_patch_size=16, sm_ratio=0.25),
            dict(type='PackInputs', algorithm_keys=['mask', 'sm_mask'])"""

UMMAE_TINY = """
_base_ = ['{runtime}']
model = dict(
    type='UMMAE',
    backbone=dict(
        type='UMSwinTransformer',
        arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                  num_heads=[1, 1, 2, 2]),
        window_size=4, drop_path_rate=0.0, out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(
        type='UMMAEPretrainDecoder', in_channels=128, embed_dims=32,
        depth=1, num_heads=2, upscale=2, input_size=64, mask_patch_size=16),
    head=dict(
        type='MAEPretrainHead', norm_pix=True, patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')))
data_preprocessor = dict(
    type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], to_rgb=True)
{loader}
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
"""

CLASSIFIER = CLASSIFIER_MODEL + """test_dataloader = dict(
    batch_size={batch}, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root='{data}',
                 pipeline=[
                     dict(type='SafeLoadImageFromFile'),
                     dict(type='Resize', scale=32),
                     dict(type='PackInputs'),
                 ]))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
"""


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory) -> Path:
    return write_image_folders(tmp_path_factory.mktemp('data'),
                               CLASS_SIZES, (72, 80))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _launch(script: Path, *args, cwd: Path, expect_rc: int = 0,
            **extra_env) -> str:
    """Run a dist_*.sh script on the CPU with NPROC processes; return its
    output, assert the exit status is ``expect_rc`` (None: any but 0). The
    whole process group (torchrun and its workers) is killed on a timeout;
    a port taken in between is retried once."""
    for attempt in range(2):
        env = dict(
            os.environ, PYTHON=sys.executable, PORT=str(_free_port()),
            MASTER_ADDR='127.0.0.1', CUDA_VISIBLE_DEVICES='',
            OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', **extra_env)
        proc = subprocess.Popen(
            ['bash', str(script), *map(str, args)], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            pytest.fail(f'{script.name} ran over {TIMEOUT_S} s:\n'
                        f'{output[-4000:]}')
        if proc.returncode != 0 and attempt == 0 and re.search(
                r'(?i)address already in use|EADDRINUSE', output):
            continue
        break
    if expect_rc is None:
        assert proc.returncode != 0, output[-6000:]
    else:
        assert proc.returncode == expect_rc, output[-6000:]
    return output


def _assert_two_cpu_ranks(log: str) -> None:
    assert 'Distributed launcher: pytorch' in log
    assert 'Distributed training: True' in log
    assert f'GPU number: {NPROC}' in log  # mmengine's name for world_size
    # The shared runtime's timeout (10 min, not torch's 30) is kept.
    assert "dist_cfg: {'backend': 'gloo', 'timeout': 600}" in log


# ----------------------------------------------------------------------------
# End to end: two processes
# ----------------------------------------------------------------------------


def test_dist_train_ummae_on_two_cpu_processes(tmp_path, data_dir):
    cfg = tmp_path / 'ummae_tiny.py'
    cfg.write_text(
        UMMAE_TINY.format(runtime=RUNTIME, loader=folder_loader(
            data_dir, TRAIN_BATCH, UMMAE_STEPS)))
    work_dir = tmp_path / 'wd'
    _launch(DIST_TRAIN, cfg, NPROC, '--work-dir', work_dir, '--cfg-options',
            GLOO, cwd=tmp_path)

    log = log_text(work_dir)
    _assert_two_cpu_ranks(log)
    # The distributed sampler split the 10 images over the 2 ranks.
    iters = math.ceil(NUM_IMAGES / (NPROC * TRAIN_BATCH))
    assert iters == 3 != math.ceil(NUM_IMAGES / TRAIN_BATCH)
    trained = re.findall(r'Epoch\(train\) \[1\]\[(\d+)/(\d+)\].*loss: (\S+)',
                         log)
    assert [(int(i), int(n)) for i, n, _ in trained] == [
        (i, iters) for i in range(1, iters + 1)
    ]
    assert all(np.isfinite(float(loss)) for *_, loss in trained)

    # The config was run as written: the runner wrapped the model for CPU
    # modules without a model_wrapper_cfg in the dumped config.
    dumped = Config.fromfile(work_dir / 'ummae_tiny.py')
    assert 'model_wrapper_cfg' not in dumped
    assert dumped.env_cfg.dist_cfg.backend == 'gloo'
    ckpt = read_checkpoint(str(work_dir / 'epoch_1.pth'))
    assert ckpt['meta']['iter'] == iters and ckpt['meta']['epoch'] == 1
    # Saved without the wrapper's `module.` prefix.
    state = ckpt['state_dict']
    assert 'backbone.mask_token' in state
    assert not any(key.startswith('module.') for key in state)


def test_dist_test_collects_both_ranks(tmp_path, data_dir):
    from mmpretrain.registry import MODELS
    cfg = tmp_path / 'cls_tiny.py'
    cfg.write_text(
        CLASSIFIER.format(runtime=RUNTIME, data=data_dir, batch=TEST_BATCH))
    # A checkpoint whose model answers class 'b' whatever the image.
    model = MODELS.build(Config.fromfile(cfg).model)
    state = model.state_dict()
    state['head.layers.head.weight'].zero_()
    state['head.layers.head.bias'].copy_(torch.tensor([0.0, 5.0]))
    ckpt = tmp_path / 'always_b.pth'
    torch.save(dict(meta=dict(), state_dict=state), ckpt)

    work_dir = tmp_path / 'test'
    out = tmp_path / 'preds.pkl'
    _launch(DIST_TEST, cfg, ckpt, NPROC, '--work-dir', work_dir, '--out', out,
            '--cfg-options', GLOO, cwd=tmp_path)

    log = log_text(work_dir)
    _assert_two_cpu_ranks(log)
    # 5 images per rank in batches of 3 (one process: 4 batches).
    assert 'Epoch(test) [2/2]' in log
    # The metric as rank 0 logs it (the scalars JSON is not used: every
    # rank's visualizer may append to the same file at the same time).
    top1 = re.findall(r'accuracy/top1: ([0-9.]+)', log)
    assert top1, log[-2000:]
    # 3 of the 10 images are 'b'; rank 0's five alone would give 20%.
    assert float(top1[-1]) == pytest.approx(30.0)
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == NUM_IMAGES
    assert {int(p['pred_label']) for p in preds} == {1}


# A hook that stalls rank 1 before its first iteration (a hung data
# loader, a dead node), imported by the test's config.
STALL_HOOK = """
import time

from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class StallRankOne(Hook):

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.rank == 1:
            time.sleep(600)
"""


def test_stalled_rank_ends_the_job_within_the_timeout(tmp_path, data_dir):
    (tmp_path / 'stall_hook.py').write_text(STALL_HOOK)
    cfg = tmp_path / 'ummae_stall.py'
    cfg.write_text(
        UMMAE_TINY.format(runtime=RUNTIME, loader=folder_loader(
            data_dir, TRAIN_BATCH, UMMAE_STEPS)) +
        "custom_imports = dict(imports=['mmumae', 'stall_hook'])\n"
        "custom_hooks = [dict(type='StallRankOne')]\n")
    start = time.time()
    output = _launch(DIST_TRAIN, cfg, NPROC, '--work-dir', tmp_path / 'wd',
                     '--cfg-options', 'env_cfg.dist_cfg.timeout=5', GLOO,
                     cwd=tmp_path, expect_rc=None, PYTHONPATH=str(tmp_path))
    elapsed = time.time() - start
    # Rank 0's gradient all-reduce gave up after 5 s, and torchrun ended
    # the sleeping rank 1: the job is over long before rank 1 would wake.
    assert 'Timed out waiting 5000ms' in output, output[-3000:]
    assert re.search(r'rank\s*: 1 \(local_rank: 1\)\n.*SIGTERM', output)
    assert elapsed < 400  # rank 1 sleeps 600 s; start-up is slow under load


# ----------------------------------------------------------------------------
# The set-up, in-process
# ----------------------------------------------------------------------------


def test_cpu_dist_refuses_launchers_other_than_torchrun(tmp_path):
    """Without a GPU only torchrun launches (``--launcher pytorch``) can
    start the gloo group; slurm and mpi are refused in one line."""
    if has_gpu():
        pytest.skip('a GPU: mmengine\'s launcher as it is')
    for launcher in ('slurm', 'mpi'):
        with pytest.raises(RunError, match='torchrun'):
            SafeRunner(model=torch.nn.Linear(1, 1), work_dir=str(tmp_path),
                       launcher=launcher)


def test_mmengine_launcher_still_needs_a_gpu(tmp_path):
    """The gap that setup_cpu_dist closes (docs/tools.md): mmengine's
    init_dist calls torch.cuda.set_device whatever the backend. When this
    test fails, mmengine starts gloo on CPU machines itself: drop the
    gloo start of SafeRunner.setup_env."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', RANK='0', WORLD_SIZE='1',
               LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(_free_port()))
    code = ('from mmengine.dist import init_dist\n'
            'init_dist("pytorch", backend="gloo")\nprint("started")')
    proc = subprocess.run([sys.executable, '-c', code], env=env, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode != 0 and 'started' not in proc.stdout, (
        'mmengine.dist.init_dist now starts gloo without a GPU: remove '
        'the gloo start of SafeRunner.setup_env')
    assert 'cuda' in proc.stderr.lower() or 'nvidia' in proc.stderr.lower()
