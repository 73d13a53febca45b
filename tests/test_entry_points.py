"""One config, one run: every way of training a config trains it as written.

``tools/train.py``, ``mim train mmpretrain`` (mmpretrain's own train.py),
``tools/dist_train.sh`` on two CPU processes and the study worker each
train the UM-MAE demo config for one short epoch with the same
``--cfg-options``; the config each one dumps into its work dir must be the
same, pipelines, loader settings, ``default_hooks`` and ``custom_hooks``
included. Only what an entry point is told to set may differ: the launcher
and the work dir (and, for the study worker, what the study sets).
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config, DictAction

REPO = Path(__file__).resolve().parents[1]
CONFIG = 'configs/ummae/ummae_swin-mini_demo.py'
DUMP = Path(CONFIG).name
MIM = Path(sys.executable).parent / 'mim'
# What each entry point says it may set itself.
OWN_KEYS = {'launcher', 'work_dir'}
# What the comparison must cover.
COMPARED = ('model', 'train_dataloader', 'default_hooks', 'custom_hooks',
            'optim_wrapper', 'param_scheduler', 'train_cfg', 'env_cfg',
            'randomness', 'runner_type', 'custom_imports')


def _options(demo_data: Path) -> list:
    # 8 images at batch 4: 2 iterations on one process, 1 on each of two
    return [
        '--cfg-options', 'train_cfg.max_epochs=1',
        f'train_dataloader.dataset.data_root={demo_data}/imagenet/',
        'train_dataloader.dataset.indices=8',
        'train_dataloader.batch_size=4', 'default_hooks.logger.interval=1'
    ]


def _parsed(options: list) -> dict:
    """``--cfg-options`` as the tools parse them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(options).cfg_options


def _run(cmd: list, **env) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=REPO, capture_output=True, text=True,
        timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1', **env))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    return log


def _dumped(work_dir: Path) -> dict:
    path = work_dir / DUMP
    assert path.is_file(), f'{work_dir} holds no dumped config'
    return Config.fromfile(str(path)).to_dict()


@pytest.fixture(scope='module')
def dumps(tmp_path_factory, demo_data) -> dict:
    root = tmp_path_factory.mktemp('entry')
    options = _options(demo_data)
    out = {}
    wd = root / 'train'
    _run([sys.executable, 'tools/train.py', CONFIG, '--work-dir', wd,
          *options])
    out['tools/train.py'] = _dumped(wd)
    wd = root / 'mim'
    _run([MIM, 'train', 'mmpretrain', CONFIG, '--work-dir', wd, *options])
    out['mim train mmpretrain'] = _dumped(wd)
    wd = root / 'dist'
    _run(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', wd,
          *options], CUDA_VISIBLE_DEVICES='', PYTHON=sys.executable,
         PORT=str(29500 + os.getpid() % 1000))
    out['tools/dist_train.sh'] = _dumped(wd)
    wd = root / 'study'
    _run([sys.executable, '-c',
          'from mmumae_tools.study.worker import train_config; '
          f'train_config({CONFIG!r}, {str(wd)!r}, '
          f'options={_parsed(options)!r})'])
    out['study worker'] = _dumped(wd)
    return out


def test_every_entry_point_dumps_the_same_config(dumps):
    reference = dumps['tools/train.py']
    for key in COMPARED:
        assert key in reference or key == 'custom_hooks', key
    for name, dumped in dumps.items():
        differing = {k for k in set(reference) | set(dumped)
                     if reference.get(k) != dumped.get(k)}
        assert differing <= OWN_KEYS, (name, sorted(differing))


def test_the_dumped_config_is_the_config_as_written(dumps, demo_data):
    """What was run is the shipped config with the command's options: no
    entry point adds, drops or rewrites anything (pipelines and loaders
    included)."""
    written = Config.fromfile(str(REPO / CONFIG))
    written.merge_from_dict(_parsed(_options(demo_data)))
    written = written.to_dict()
    for name, dumped in dumps.items():
        differing = {k for k in set(written) | set(dumped)
                     if written.get(k) != dumped.get(k)}
        assert differing <= OWN_KEYS, (name, sorted(differing))
