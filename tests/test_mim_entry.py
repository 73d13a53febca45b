"""`mim train mmpretrain CONFIG` runs mmpretrain's own tools/train.py.

mim is only a launcher for ``<mmpretrain>/.mim/tools/train.py``; running that
script directly on our demo config checks what mim relies on: the config's
``custom_imports`` registers mmumae in a fresh process that never imported
it, and the demo config needs no CPU fall-back (plain ``OptimWrapper``).
"""
import os
import os.path as osp
import subprocess
import sys

import mmpretrain

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_mmpretrain_train_script_runs_the_demo_config(tmp_path, demo_data):
    script = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                      'train.py')
    assert osp.exists(script)
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, script, 'configs/ummae/ummae_swin-mini_demo.py',
         '--work-dir', str(tmp_path), '--cfg-options',
         'train_cfg.max_epochs=1',
         f'train_dataloader.dataset.data_root={demo_data}/imagenet',
         'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False',
         'default_hooks.logger.interval=5'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert 'Epoch(train) [1][20/20]' in log
    assert osp.exists(osp.join(tmp_path, 'epoch_1.pth'))
    assert osp.getsize(osp.join(tmp_path, 'reconstruction.png')) > 0
