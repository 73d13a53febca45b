"""The ELPV converter on the real ``elpv-dataset`` package, the study
runner on a tiny grid of real runs (mmengine's Runner, a few iterations),
and the study worker training a config as ``tools/train.py`` does."""
import csv
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from mmengine.config import Config
from tool_helpers import REPO, load_tool

from mmumae_tools import elpv as prepare_elpv
from mmumae_tools.study import worker
from mmumae_tools.study.plan import load_study, plan_runs

pytest.importorskip('elpv_dataset', reason='needs requirements/study.txt')
ROOT = str(REPO)
RUNNER = osp.join(ROOT, 'tools', 'analysis_tools', 'run_study.py')
STUDY_DIR = osp.join(ROOT, 'configs', 'studies', 'elpv')
DEMO = osp.join(ROOT, 'configs', 'ummae', 'ummae_swin-mini_demo.py')
elpv_tool = load_tool(REPO / 'tools' / 'dataset_converters' /
                      'prepare_elpv.py', 'mmumae_prepare_elpv')
train_tool = load_tool(REPO / 'tools' / 'train.py', 'mmumae_study_train')


@pytest.fixture(scope='module')
def elpv(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('elpv') / 'elpv')
    summary = prepare_elpv.prepare_elpv(out)
    return out, summary


def _split(path):
    with open(osp.join(path, 'meta', 'split.csv')) as f:
        return list(csv.DictReader(f))


def test_prepare_elpv_layout_counts_and_labels(elpv):
    out, summary = elpv
    from mmpretrain.datasets import CustomDataset
    rows = _split(out)
    assert len(rows) == 2624
    total = 0
    for part in ('train', 'val', 'test'):
        ds = CustomDataset(data_root=out, data_prefix=part)
        assert ds.CLASSES == ('0_functional', '1_defective')
        total += len(ds)
        # the folder scan and the annotation file give the same labels
        ann = CustomDataset(data_root=out, data_prefix=part,
                            ann_file=f'meta/{part}.txt',
                            metainfo=dict(classes=ds.CLASSES))
        by_path = {d['img_path']: d['gt_label'] for d in ann}
        for d in ds:
            assert by_path[d['img_path']] == d['gt_label']
        # labels follow the package's probabilities: defective iff p >= 0.5
        probs = {r['image']: float(r['probability']) for r in rows}
        for d in ds:
            assert d['gt_label'] == int(probs[osp.basename(d['img_path'])]
                                        >= 0.5)
        assert summary['counts'][part] == dict(Counter(
            ds.CLASSES[d['gt_label']] for d in ds))
    assert total == 2624
    assert summary['test_majority_accuracy'] == pytest.approx(
        100 * 450 / 654, abs=0.01)


def test_prepare_elpv_stratified(elpv):
    out, _ = elpv
    groups = {}
    for r in _split(out):
        key = (round(float(r['probability']), 2), r['type'])
        groups.setdefault(key, Counter())[r['split']] += 1
    assert len(groups) == 8  # 4 probability levels x mono/poly
    for key, c in groups.items():
        n = sum(c.values())
        assert abs(c['test'] - 0.25 * n) <= 1, key
        assert abs(c['val'] - 0.15 * (n - c['test'])) <= 1, key


def test_prepare_elpv_deterministic_and_seeded(elpv, tmp_path):
    out, _ = elpv
    again = str(tmp_path / 'again')
    prepare_elpv.prepare_elpv(again)
    assert _split(again) == _split(out)
    other = str(tmp_path / 'other')
    prepare_elpv.prepare_elpv(other, seed=1)
    assert _split(other) != _split(out)
    # a second call with the same settings keeps the copy (stamp)
    stamp = osp.getmtime(osp.join(again, 'meta', 'split.csv'))
    prepare_elpv.prepare_elpv(again)
    assert osp.getmtime(osp.join(again, 'meta', 'split.csv')) == stamp


def test_prepare_elpv_four_classes(tmp_path):
    out = str(tmp_path / 'elpv4')
    summary = prepare_elpv.prepare_elpv(out, classes='4')
    assert summary['classes'] == list(prepare_elpv.FOUR_CLASSES)
    assert sum(sum(c.values()) for c in summary['counts'].values()) == 2624
    assert sorted(os.listdir(osp.join(out, 'train'))) == list(
        prepare_elpv.FOUR_CLASSES)


def test_prepare_elpv_names_missing_package(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, 'elpv_dataset', None)
    assert elpv_tool.main(['--out', str(tmp_path / 'x')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ')
    assert 'elpv-dataset' in err and 'requirements/study.txt' in err
    assert not osp.exists(tmp_path / 'x')


def _tiny_data(elpv_root, dst, per_class):
    """A small ImageNet-layout copy: ``per_class[split]`` images of each
    class."""
    for part, n in per_class.items():
        for cls in sorted(os.listdir(osp.join(elpv_root, part))):
            os.makedirs(osp.join(dst, part, cls))
            for name in sorted(os.listdir(osp.join(elpv_root, part, cls)))[:n]:
                shutil.copy(osp.join(elpv_root, part, cls, name),
                            osp.join(dst, part, cls, name))
    return dst


def _study(tmp_path, data, name='tiny', **extra):
    path = tmp_path / f'{name}.py'
    small = {'train_dataloader.batch_size': 8}
    body = dict(
        data_root=data,
        work_dir=str(tmp_path / 'out'),
        pretrain=dict(ummae=osp.join(STUDY_DIR,
                                     'ummae_swin-mini_elpv-128px.py')),
        finetune=osp.join(STUDY_DIR, 'swin-mini_elpv-128px_finetune.py'),
        seeds=[0],
        pretrain_epochs=1,
        finetune_epochs=1,
        lr_grid=[1e-3],
        evaluations=['finetune'],
        arms=[dict(name='ummae', pretrain='ummae', pretrain_options=small,
                   finetune_options=small)])
    body.update(extra)
    path.write_text('\n'.join(f'{k} = {v!r}' for k, v in body.items()))
    return str(path)


def _run(study, *args, timeout=600):
    env = dict(os.environ, STUDY_THREADS='1', PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, RUNNER, study, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_runner_tiny_grid_table_and_skip(elpv, tmp_path):
    data = _tiny_data(elpv[0], str(tmp_path / 'data'),
                      dict(train=12, val=4, test=4))
    study = _study(tmp_path, data,
                   evaluations=['finetune', 'knn', 'linear'])
    proc = _run(study)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'run 1/3: pre_ummae_e1' in proc.stdout
    assert 'run 2/3: frozen_ummae_e1' in proc.stdout
    assert 'run 3/3: ft_ummae_e1' in proc.stdout
    out = tmp_path / 'out'
    md = (out / 'results.md').read_text()
    row = [line for line in md.splitlines() if line.startswith('| ummae |')]
    assert row, md
    cells = [c.strip() for c in row[0].strip('|').split('|')]
    # arm, n, accuracy, balanced accuracy, macro-F1, pre-training minutes
    assert cells[1] == '1'
    for value in cells[2:]:
        assert 0.0 <= float(value) <= 100.0
    with open(out / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]['test_acc']) >= 0
    for key in ('knn_test_acc', 'linear_test_acc', 'linear_test_f1'):
        assert 0 <= float(rows[0][key]) <= 100
    assert float(rows[0]['pretrain_wall_s']) > 0
    assert (out / 'results.png').stat().st_size > 1000
    # the fine-tuning run started from the pre-training checkpoint
    ft_dirs = list((out / 'runs').glob('ft_ummae_*'))
    assert len(ft_dirs) == 1
    spec = json.loads((ft_dirs[0] / 'run.json').read_text())
    assert spec['pretrain_checkpoint'].endswith('epoch_1.pth')
    assert osp.isfile(spec['pretrain_checkpoint'])
    # rerun: nothing is repeated
    again = _run(study)
    assert again.returncode == 0, again.stdout + again.stderr
    assert 'run 1/' not in again.stdout
    assert (out / 'results.md').read_text() == md


def test_runner_killed_run_continues(elpv, tmp_path):
    data = _tiny_data(elpv[0], str(tmp_path / 'data'),
                      dict(train=24, val=4, test=4))
    every_epoch = {'train_dataloader.batch_size': 8,
                   'default_hooks.checkpoint.interval': 1}
    study = _study(tmp_path, data, name='kill', pretrain_epochs=6,
                   arms=[dict(name='ummae', pretrain='ummae',
                              pretrain_options=every_epoch,
                              finetune_options=every_epoch)])
    env = dict(os.environ, STUDY_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, RUNNER, study], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    run_dir = tmp_path / 'out' / 'runs' / ('pre_ummae_e6_interval1-'
                                           'batch_size8_s0')
    deadline = time.time() + 300
    # a checkpoint every epoch: kill the study (runner and worker) once the
    # first one is written
    while time.time() < deadline and not list(run_dir.glob('epoch_*.pth')):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpts = list(run_dir.glob('epoch_*.pth'))
    if not ckpts or (run_dir / 'result.json').exists():
        pytest.fail('the run was not caught between its first checkpoint '
                    'and its end')
    done = _run(study)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((run_dir / 'result.json').read_text())
    assert result['resumed'] is True
    assert osp.isfile(result['checkpoint'])
    assert result['checkpoint'].endswith('epoch_6.pth')
    log = (run_dir / 'run.log').read_text()
    assert log.count(' start\n') == 2
    # mmengine resumed mid-run (not from epoch 0)
    assert re.search(r'resumed epoch: [1-5], iter: [1-9]', log), log[-2000:]


@pytest.mark.parametrize(
    'name', sorted(n for n in os.listdir(STUDY_DIR) if n.startswith('study_')))
def test_shipped_studies_plan(elpv, name):
    """Every shipped study loads, names configs that exist, and plans its
    runs; fine-tuning of the seeds after the lr selection waits for it."""
    cfg = load_study(osp.join(STUDY_DIR, name), data_root=elpv[0])
    for path in list(cfg.pretrain.values()) + [cfg.finetune]:
        assert osp.isfile(osp.join(ROOT, path)), path
    runs = plan_runs(cfg, chosen_lr={})
    names = [r.name for r in runs]
    assert len(names) == len(set(names))
    kinds = Counter(r['kind'] for r in runs)
    assert kinds['pretrain'] >= 1 and kinds['finetune'] >= 1
    # every run comes after the pre-training it starts from
    for i, run in enumerate(runs):
        if run.get('pretrain'):
            assert run['pretrain'] in names[:i]
    with_lr = plan_runs(cfg, chosen_lr={a['name']: 1e-3 for a in cfg.arms})
    assert len(with_lr) >= len(runs)


def test_frozen_model_normalises_like_the_runner(elpv):
    """The frozen-feature model gets the config's data_preprocessor, as
    mmengine's Runner gives it to fine-tuning (unnormalised 0-255 inputs
    saturate a pre-trained backbone into constant features)."""
    import torch
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(STUDY_DIR,
                                   'swin-mini_elpv-128px_finetune.py'))
    model = worker.build_model(cfg)
    pre = model.data_preprocessor
    assert torch.allclose(pre.mean.flatten(),
                          torch.tensor(cfg.data_preprocessor.mean))
    assert torch.allclose(pre.std.flatten(),
                          torch.tensor(cfg.data_preprocessor.std))
    loader = cfg.test_dataloader
    loader.dataset.data_root = elpv[0]
    loader.update(num_workers=0, persistent_workers=False, batch_size=8)
    batch = next(iter(Runner.build_dataloader(loader)))
    inputs = pre(batch, False)['inputs']
    assert inputs.abs().mean() < 3  # normalised, not 0-255


def test_runner_refuses_bad_study(tmp_path):
    study = _study(tmp_path, str(tmp_path / 'nowhere'))
    proc = _run(study)
    assert proc.returncode == 1
    assert proc.stderr.startswith('error: ')
    assert 'nowhere' in proc.stderr and 'train' in proc.stderr


def test_worker_does_not_rerun_a_run_another_process_finished(tmp_path):
    """A run whose result another study process wrote is not run again
    (the worker waits on the run's lock, then finds the result)."""
    result = {'kind': 'pretrain', 'name': 'pre_x_s0', 'wall_s': 1.0}
    (tmp_path / 'result.json').write_text(json.dumps(result))
    spec = tmp_path / 'run.json'
    # a run the worker could not even build: it must not try
    spec.write_text(json.dumps(dict(kind='pretrain', name='pre_x_s0',
                                    seed=0, work_dir=str(tmp_path))))
    assert worker.main(str(spec)) == 0
    assert json.loads((tmp_path / 'result.json').read_text()) == result
    assert (tmp_path / 'study.lock').is_file()


def _dumped(path) -> Config:
    """A config as mmengine dumps it and reads it back."""
    return Config.fromfile(str(path))


def test_worker_trains_the_config_as_tools_train_does(demo_data, tmp_path):
    """The worker trains a config as written, built as tools/train.py
    builds it: the config mmengine dumps into the work dir has the
    pipelines, loader settings, default_hooks and custom_hooks that
    tools/train.py gives the same config; only the study's overrides
    (data root, seed, epochs, work dir) differ."""
    data = tmp_path / 'data'
    (data / 'meta').mkdir(parents=True)
    (data / 'train').symlink_to(demo_data / 'imagenet' / 'train')
    lines = (demo_data / 'imagenet' / 'meta' / 'train.txt').read_text()
    (data / 'meta' / 'train.txt').write_text(
        ''.join(lines.splitlines(True)[::20]))  # 16 images: one batch
    work_dir = tmp_path / 'run'
    runner = worker.train_config(DEMO, str(work_dir), data_root=str(data),
                                 seed=3, epochs=1)
    assert type(runner).__name__ == 'SafeRunner'
    assert (work_dir / 'epoch_1.pth').is_file()
    got = _dumped(work_dir / osp.basename(DEMO))
    want = train_tool.merge_args(Config.fromfile(DEMO),
                                 train_tool.parse_args([DEMO]))
    want.dump(str(tmp_path / 'want.py'))
    want = _dumped(tmp_path / 'want.py')
    for key in ('default_hooks', 'custom_hooks', 'custom_imports',
                'runner_type', 'model', 'optim_wrapper', 'val_cfg'):
        assert got.get(key) == want.get(key), key
    assert got.train_dataloader.dataset.data_root == str(data)
    got.train_dataloader.dataset.data_root = \
        want.train_dataloader.dataset.data_root
    assert got.train_dataloader == want.train_dataloader
    assert got.train_cfg == dict(want.train_cfg, max_epochs=1)
    assert got.randomness == dict(want.randomness, seed=3)
    assert got.work_dir == str(work_dir)
