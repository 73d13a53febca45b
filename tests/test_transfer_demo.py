"""The transfer demo's progress lines (tools/run_transfer_demo.py, code in
mmumae_tools.transfer_demo) and tools/run_demo.sh's
``latest.pth``, which the fine-tune, Mask R-CNN and UperNet demo configs
start from whatever the number of pre-training epochs.

The real run: ``tools/run_demo.sh --cfg-options train_cfg.max_epochs=1``
(20 iterations), launched through the transfer demo's own ``_run``; its
printed progress is checked, then each Swin demo config, with only the
work-dir part of its checkpoint path moved to the test's folder, loads its
backbone from the ``latest.pth`` that run left.
"""
import json
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from tool_helpers import REPO

import mmumae  # noqa: F401  (registers the backbones everywhere)
from mmumae_tools import transfer_demo as demo

PRETRAIN_DIR = 'work_dirs/ummae_swin-mini_demo'
SWIN_DEMOS = [
    'configs/finetune/swin-mini_ummae-pre_demo.py',
    'configs/mmdet/mask-rcnn_swin-mini_demo.py',
    'configs/mmseg/upernet_swin-mini_demo.py',
]

# lines as mmengine 0.10's LoggerHook writes them (from demo runs)
EPOCH_LINE = ('12/01 17:13:48 - mmengine - INFO - Epoch(train) [2][ 6/12]  '
              'base_lr: 1.3375e-04 lr: 1.3375e-04  eta: 0:00:35  time: '
              '5.8385  data_time: 0.0424  loss: 3.7808')
ITER_LINE = ('12/01 17:15:40 - mmengine - INFO - Iter(train) [ 20/100]  '
             'base_lr: 4.9e-04 lr: 4.9e-04  eta: 1 day, 2:03:04  time: 0.3  '
             'data_time: 0.01  memory: 0  loss: 1.2')
VAL_LINE = ('12/01 17:14:50 - mmengine - INFO - Epoch(val) [1][4/4]    '
            'coco/bbox_mAP: 0.0000  data_time: 0.0540  time: 6.7782')
ITER_VAL_LINE = ('12/01 17:16:06 - mmengine - INFO - Iter(val) [16/16]    '
                 'aAcc: 0.3800  mIoU: 0.0500')


def test_progress_reads_mmengine_log_lines():
    p = demo.Progress('step 4/10 ummae: mask-rcnn')
    assert p.update('loading annotations into memory...\n') is None
    # before the config dump: epoch without its maximum
    assert p.update(EPOCH_LINE) == 'epoch 2, iteration 6/12, ETA 0:00:35'
    assert p.update(
        "train_cfg = dict(max_epochs=6, type='EpochBasedTrainLoop', "
        'val_interval=6)\n') is None
    assert p.update(EPOCH_LINE) == 'epoch 2/6, iteration 6/12, ETA 0:00:35'
    assert p.update(VAL_LINE) == 'evaluating 4/4'
    assert p.status == 'evaluating 4/4'

    it = demo.Progress('step 6/10 ummae: upernet')
    it.update("train_cfg = dict(max_iters=100, type='IterBasedTrainLoop', "
              'val_interval=100)')
    assert it.update(ITER_LINE) == 'iteration 20/100, ETA 1 day, 2:03:04'
    assert it.update(ITER_VAL_LINE) == 'evaluating 16/16'


def test_steps_are_counted():
    """Pre-training (unless reused), its conversion, four steps per row."""
    assert demo.count_steps(pretrain_reused=True, with_random=True) == 8
    assert demo.count_steps(pretrain_reused=False, with_random=True) == 9
    assert demo.count_steps(pretrain_reused=True, with_random=False) == 5


def test_run_prints_a_heartbeat_and_fails_with_the_log_tail(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, 'HEARTBEAT_S', 0.2)
    log = tmp_path / 'quiet.log'
    seconds = demo._run(
        ['python3', '-c', 'import time; time.sleep(1); print("done")'],
        str(log), 'step 1/1 quiet')
    out = capsys.readouterr().out
    assert seconds >= 1
    assert 'step 1/1 quiet | starting |' in out  # no log line for 1 s
    assert log.read_text() == 'done\n'
    with pytest.raises(SystemExit, match=r'(?s)step 1/1 bad failed \(exit '
                       r'3\).*last words'):
        demo._run(['python3', '-c', 'print("last words"); exit(3)'],
                  str(tmp_path / 'bad.log'), 'step 1/1 bad')


def test_last_checkpoint_reads_relative_and_absolute_pointers(tmp_path):
    """``last_checkpoint`` may name the file relative to the work dir (as
    runsafe's WorkDirHook writes it) or by an absolute path; a pointer to
    a missing file gives None."""
    (tmp_path / 'epoch_2.pth').write_bytes(b'x')
    pointer = tmp_path / 'last_checkpoint'
    assert demo.last_checkpoint(str(tmp_path)) is None
    pointer.write_text('epoch_2.pth')
    assert demo.last_checkpoint(str(tmp_path)) == str(tmp_path /
                                                      'epoch_2.pth')
    pointer.write_text(str(tmp_path / 'epoch_2.pth'))
    assert demo.last_checkpoint(str(tmp_path)) == str(tmp_path /
                                                      'epoch_2.pth')
    pointer.write_text('epoch_3.pth')
    assert demo.last_checkpoint(str(tmp_path)) is None


def test_demo_configs_start_from_latest_pth_of_run_demo_work_dir():
    text = (REPO / 'tools' / 'run_demo.sh').read_text()
    assert f'WORK_DIR="${{DEMO_WORK_DIR:-{PRETRAIN_DIR}}}"' in text
    for path in SWIN_DEMOS:
        cfg = Config.fromfile(str(REPO / path))
        assert cfg.model.backbone.init_cfg.checkpoint == \
            f'{PRETRAIN_DIR}/latest.pth', path
    pvt = Config.fromfile(
        str(REPO / 'configs/finetune/pvt-mini_ummae-pre_demo.py'))
    assert pvt.model.backbone.init_cfg.checkpoint == \
        'work_dirs/ummae_pvt-mini_demo/latest.pth'


def _backbone_from(config: str, checkpoint: str) -> torch.nn.Module:
    cfg = Config.fromfile(str(REPO / config))
    backbone = cfg.model.backbone
    assert backbone.init_cfg.checkpoint.startswith(PRETRAIN_DIR + '/')
    backbone.init_cfg.checkpoint = checkpoint
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(backbone)
    model.init_weights()
    return model


def test_one_epoch_demo_pretraining_feeds_every_swin_demo(
        tmp_path, capsys, demo_data):
    work_dir = tmp_path / 'ummae_swin-mini_demo'
    log = tmp_path / 'pretrain.log'
    demo._run(['bash', 'tools/run_demo.sh', '--cfg-options',
               'train_cfg.max_epochs=1', 'default_hooks.logger.interval=5'],
              str(log), 'step 1/1 pre-train',
              env=dict(os.environ, DEMO_WORK_DIR=str(work_dir),
                       DEMO_DATA=str(demo_data)))
    out = capsys.readouterr().out
    for it in (5, 10, 15, 20):
        assert (f'step 1/1 pre-train | epoch 1/1, iteration {it}/20, ETA '
                in out), out
    assert 'latest.pth -> epoch_1.pth' in log.read_text()

    latest = work_dir / 'latest.pth'
    assert latest.is_symlink() and latest.resolve() == (
        work_dir / 'epoch_1.pth').resolve()
    # a runner checkpoint (message hub objects too): our own file
    saved = torch.load(latest, map_location='cpu', weights_only=False)
    want = {k[len('backbone.'):]: v for k, v in saved['state_dict'].items()
            if k.startswith('backbone.')}
    for config in SWIN_DEMOS:
        state = _backbone_from(config, str(latest)).state_dict()
        same = [k for k in want if k in state and torch.equal(state[k],
                                                              want[k])]
        # every pre-trained tensor of the backbone arrived (the dense
        # backbones add only their output norms)
        assert len(same) == len(want), (config, len(same), len(want))


def test_chain_commands_and_table(tmp_path, monkeypatch):
    """The chain's commands in order (tools/train.py on each config as
    written, only --work-dir and the backbone checkpoint set), the dense
    tasks starting from the fine-tuned backbone (random init: none), and
    the table of the runs' logged metrics."""
    calls = []
    metrics = {'accuracy/top1': 50.0, 'coco/bbox_mAP': 0.1,
               'coco/segm_mAP': 0.2, 'mIoU': 30.0}

    def fake_run(cmd, log, label, env=None):
        assert env['PATH'] == os.environ['PATH']
        calls.append((label, cmd))
        if 'tools/train.py' in cmd:
            work_dir = cmd[cmd.index('--work-dir') + 1]
            os.makedirs(f'{work_dir}/t/vis_data', exist_ok=True)
            with open(f'{work_dir}/t/vis_data/scalars.json', 'w') as f:
                f.write(json.dumps(metrics) + '\n')
            with open(f'{work_dir}/last_checkpoint', 'w') as f:
                f.write('epoch_1.pth')
            open(f'{work_dir}/epoch_1.pth', 'w').close()
        return 1.0

    monkeypatch.setattr(demo, '_run', fake_run)
    pre = tmp_path / 'pre'
    pre.mkdir()
    (pre / 'epoch_3.pth').write_bytes(b'x')
    (pre / 'last_checkpoint').write_text('epoch_3.pth')
    text = demo.run_chain(str(tmp_path / 'w'), str(pre))
    labels = [label for label, _ in calls]
    assert labels == [
        'step 1/8 convert pre-trained', 'step 2/8 ummae: finetune',
        'step 3/8 ummae: convert fine-tuned', 'step 4/8 ummae: mask-rcnn',
        'step 5/8 ummae: upernet', 'step 6/8 random: finetune',
        'step 7/8 random: mask-rcnn', 'step 8/8 random: upernet']
    w = tmp_path / 'w'
    assert calls[0][1][-2:] == [str(pre / 'epoch_3.pth'),
                                str(w / 'pretrain_backbone.pth')]
    opts = [cmd[-1] for _, cmd in calls if 'tools/train.py' in cmd]
    ft = w / 'ummae_ft_backbone.pth'
    assert opts == [
        f'model.backbone.init_cfg.checkpoint={w / "pretrain_backbone.pth"}',
        f'model.backbone.init_cfg.checkpoint={ft}',
        f'model.backbone.init_cfg.checkpoint={ft}'] + [
            'model.backbone.init_cfg=None'] * 3
    for _, cmd in calls:
        if 'tools/train.py' in cmd:
            assert cmd[2] in [config for _, config, _ in demo.TASKS]
            assert cmd[3:6] == ['--work-dir', cmd[4], '--overwrite']
    assert '| UM-MAE pre-trained -> fine-tuned | 50.00 | 10.0 | 20.0 | ' \
        '30.00 |' in text
    assert (w / 'results.md').read_text() == text + '\n'
