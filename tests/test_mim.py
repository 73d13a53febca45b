"""`mim train mmdet` / `mim test mmdet` on the Mask R-CNN demo config.

openmim 0.3.9 is installed by tools/setup_env.sh with ``--no-deps`` (its
opendatalab -> openxlab dependency pins setuptools~=60.2); this checks that
the ``mim`` of the venv answers, that setuptools was left at the version
torch needs, and that mim's route (mmdet's own ``.mim/tools/train.py`` and
``test.py`` in a fresh process, mmumae registered by the config's
``custom_imports``) trains, evaluates and tests the demo config on a CPU.
"""
import os
import re
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
MIM = Path(sys.executable).parent / 'mim'
DET_DEMO = 'configs/mmdet/mask-rcnn_swin-mini_demo.py'
# One process, no workers, 8 training and 4 val images (2 + 1 iterations):
# the test shares the CPU with the rest of the suite.
LOADERS = [f'{loader}.{key}' for loader in ('train_dataloader',
                                            'val_dataloader',
                                            'test_dataloader')
           for key in ('num_workers=0', 'persistent_workers=False')] + [
               'train_dataloader.dataset.indices=8',
               'val_dataloader.dataset.indices=4',
               'test_dataloader.dataset.indices=4'
           ]


def _mim(*args: str, timeout: int = 1800) -> str:
    """Run the venv's mim; its output. On a time-out the whole process
    group goes (mim starts the OpenMMLab script as a child)."""
    proc = subprocess.Popen(
        [str(MIM), *args], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        raise AssertionError(f'mim {" ".join(args)} ran past {timeout} s:\n'
                             + log[-3000:])
    assert proc.returncode == 0, log[-4000:]
    return log


def test_mim_is_installed_without_downgrading_setuptools():
    assert MIM.is_file(), f'no {MIM}: run tools/setup_env.sh'
    assert 'mim, version 0.3.9' in _mim('--version', timeout=120)
    major = int(version('setuptools').split('.')[0])
    assert major >= 77, 'openmim pulled in openxlab and its setuptools 60'


def test_mim_train_and_test_mmdet_demo(tmp_path):
    work_dir = tmp_path / 'train'
    log = _mim('train', 'mmdet', DET_DEMO, '--gpus', '0', '--work-dir',
               str(work_dir), '--cfg-options', 'model.backbone.init_cfg=None',
               'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
               *LOADERS)
    # mim ran mmdet's own training script, not ours
    assert re.search(r'mmdet/\.mim/tools/train\.py', log), log[-3000:]
    assert 'Epoch(train) [1][2/2]' in log
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\]\s+coco/bbox_mAP: ', log)
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()

    log = _mim('test', 'mmdet', DET_DEMO, '--checkpoint', str(ckpt),
               '--gpus', '0', '--work-dir', str(tmp_path / 'test'),
               '--cfg-options', 'model.backbone.init_cfg=None', *LOADERS)
    assert re.search(r'mmdet/\.mim/tools/test\.py', log), log[-3000:]
    assert re.search(r'Epoch\(test\) \[1/1\]\s+coco/bbox_mAP: .*'
                     r'coco/segm_mAP: ', log), log[-3000:]
