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
import torch
from mmengine.config import Config
from tool_helpers import REPO, load_tool

from mmumae_tools import elpv as prepare_elpv
from mmumae_tools.study import features, worker
from mmumae_tools.study.plan import (StudyError, data_fingerprint,
                                     load_study, plan_runs)
from mmumae_tools.study.report import choose_lr, collect, markdown

pytest.importorskip('elpv_dataset', reason='needs requirements/study.txt')
ROOT = str(REPO)
RUNNER = osp.join(ROOT, 'tools', 'analysis_tools', 'run_study.py')
ELPV_TOOL = osp.join(ROOT, 'tools', 'dataset_converters', 'prepare_elpv.py')
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
    # the cost a run's own processes spent, beside its wall time
    assert 0 < float(rows[0]['pretrain_cpu_s'])
    assert 'pre-training CPU (min)' in md
    assert (out / 'results.png').stat().st_size > 1000
    # the fine-tuning run started from the pre-training checkpoint, and
    # records the data it used
    ft_dirs = list((out / 'runs').glob('data-*/ft_ummae_*'))
    assert len(ft_dirs) == 1
    spec = json.loads((ft_dirs[0] / 'run.json').read_text())
    assert spec['pretrain_checkpoint'].endswith('epoch_1.pth')
    assert osp.isfile(spec['pretrain_checkpoint'])
    result = json.loads((ft_dirs[0] / 'result.json').read_text())
    assert result['data_root'] == data
    assert result['data_fingerprint'] == data_fingerprint(data)
    # whether it predicted one class only, on each split
    assert {type(result[f'{s}_collapsed']) for s in ('val', 'test')} == {bool}
    # rerun: nothing is repeated
    again = _run(study)
    assert again.returncode == 0, again.stdout + again.stderr
    assert 'run 1/' not in again.stdout
    assert (out / 'results.md').read_text() == md
    # a result.json cut short (a run killed while writing it) is named in
    # one line, reported as not done, and the run is done again
    corrupt = ft_dirs[0] / 'result.json'
    corrupt.write_text(corrupt.read_text()[:40])
    report = _run(study, '--report-only')
    assert report.returncode == 0, report.stderr
    named = [line for line in report.stderr.splitlines() if 'corrupt' in line]
    assert len(named) == 1 and f'{corrupt} is corrupt' in named[0]
    assert f'| {ft_dirs[0].name} | not run yet |' in (
        out / 'results.md').read_text()
    redo = _run(study)
    assert redo.returncode == 0, redo.stdout + redo.stderr
    assert 'run 3/3: ft_ummae_e1' in redo.stdout
    assert 'run 1/' not in redo.stdout and 'run 2/' not in redo.stdout
    assert json.loads(corrupt.read_text())['test_acc'] >= 0


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
    run_dir = tmp_path / 'out' / 'runs' / f'data-{data_fingerprint(data)}' \
        / 'pre_ummae_e6_interval1-batch_size8_s0'
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


# ------------------------------------------------- the ELPV converter's files
def _fake_package(root, n=96):
    """A stand-in for the elpv_dataset data folder: ``n`` small files and
    labels.csv over the four levels and both module types."""
    (root / 'images').mkdir(parents=True)
    lines = []
    for i in range(n):
        name = f'images/cell{i:04d}.png'
        (root / name).write_bytes(name.encode())
        lines.append(f'{name} {prepare_elpv.LEVELS[i % 4]:.4f} '
                     f'{("mono", "poly")[i // 4 % 2]}')
    (root / 'labels.csv').write_text('\n'.join(lines) + '\n')
    return str(root)


def _check_folders(out):
    """Each split folder holds exactly the images its meta list names."""
    for part in prepare_elpv.SPLITS:
        listed = {line.split()[0] for line in
                  open(osp.join(out, 'meta', f'{part}.txt'))}
        found = {osp.relpath(osp.join(d, f), osp.join(out, part))
                 for d, _, files in os.walk(osp.join(out, part))
                 for f in files if f.endswith('.png')}
        assert listed and found == listed, part


def test_prepare_elpv_rewrites_for_other_settings(tmp_path):
    """Run again into the same folder with another seed, test ratio or
    class count, the converter rewrites the copy as a fresh one with those
    settings (no image of the old split stays), and keeps files it did not
    write."""
    root = _fake_package(tmp_path / 'pkg')
    out = str(tmp_path / 'out')
    prepare_elpv.prepare_elpv(out, root=root)
    _check_folders(out)
    mine = tmp_path / 'out' / 'train' / '0_functional' / 'my_notes.txt'
    mine.write_text('mine')
    for i, settings in enumerate([dict(seed=1), dict(test_ratio=0.5),
                                  dict(classes='4')]):
        prepare_elpv.prepare_elpv(out, root=root, **settings)
        fresh = str(tmp_path / f'fresh{i}')
        prepare_elpv.prepare_elpv(fresh, root=root, **settings)
        assert _split(out) == _split(fresh), settings
        _check_folders(out)
    assert sorted(os.listdir(osp.join(out, 'train'))) == [
        '0_functional'] + list(prepare_elpv.FOUR_CLASSES)
    assert mine.read_text() == 'mine'


def test_prepare_elpv_removes_only_its_own_files(tmp_path, capsys):
    """Pointed at a folder holding a data set it did not write, the
    converter refuses in one line naming the folder, and removes nothing;
    a file or a negative seed is refused the same way."""
    user = tmp_path / 'mine'
    (user / 'train' / 'cats').mkdir(parents=True)
    (user / 'train' / 'cats' / 'my_photo.JPEG').write_bytes(b'cat')
    for argv, words in (
            (['--out', str(user)], f'{user} holds files prepare_elpv.py '
             'did not write (e.g. train/cats/my_photo.JPEG)'),
            (['--out', str(user / 'train' / 'cats' / 'my_photo.JPEG')],
             'my_photo.JPEG is a file; name a folder'),
            (['--out', str(tmp_path / 'new'), '--seed', '-1'],
             '--seed must be an integer from 0')):
        assert elpv_tool.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith('error: ') and err.count('\n') == 1, err
        assert words in err, err
    assert (user / 'train' / 'cats' / 'my_photo.JPEG').read_bytes() == b'cat'
    assert sorted(os.listdir(tmp_path)) == ['mine']


def _on_small_disk(mount, options, out):
    """prepare_elpv.py --out ``out`` in a process that sees a tmpfs with
    ``options`` (its own user and mount namespace) at ``mount``."""
    code = (f'import runpy, sys\nsys.argv = ["prepare_elpv.py", "--out", '
            f'{str(out)!r}]\nrunpy.run_path({ELPV_TOOL!r}, '
            f'run_name="__main__")\n')
    return subprocess.run(
        ['unshare', '-rm', 'sh', '-c', f'mount -t tmpfs -o {options} tmpfs '
         f'{mount} && exec "$0" -c "$1"', sys.executable, code], cwd=ROOT,
        capture_output=True, text=True, timeout=120)


def test_prepare_elpv_failed_writes_answer_one_line(tmp_path):
    """A read-only disk and a full one each end in one line naming the
    file and the fix, and exit status 1."""
    disk = tmp_path / 'disk'
    disk.mkdir()
    if subprocess.run(['unshare', '-rm', 'true'],
                      capture_output=True).returncode:
        pytest.skip('no user namespaces: cannot mount a small disk')
    for options, out, words in (
            ('ro,size=1m', disk / 'elpv', 'Read-only file system; make it '
             'writable or name another folder with --out'),
            ('size=1m', disk, 'No space left on device; free some space or '
             'name another folder with --out')):
        proc = _on_small_disk(disk, options, out)
        assert proc.returncode == 1, proc.stderr[-2000:]
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            f'error: cannot write {out}/'), err
        assert words in err[0], err


# ------------------------------------------------------- the study's checks
def test_runs_of_other_data_are_not_reused(elpv, tmp_path):
    """Runs made on one data set are neither skipped nor reported for
    another: another --data-root, or the same folder rewritten by
    prepare_elpv.py with another seed, plans every run again and reports
    none of the old numbers under its name."""
    a = _tiny_data(elpv[0], str(tmp_path / 'a'), dict(train=2, val=1,
                                                      test=1))
    b = _tiny_data(elpv[0], str(tmp_path / 'b'), dict(train=3, val=1,
                                                      test=1))
    study = _study(tmp_path, a, evaluations=['finetune', 'knn', 'linear'])
    cfg = load_study(study)
    for run in plan_runs(cfg, {}):  # finished, as the worker leaves them
        os.makedirs(osp.join(cfg.runs_dir, run.name))
        with open(osp.join(cfg.runs_dir, run.name, 'result.json'), 'w') as f:
            json.dump(dict(wall_s=60.0, checkpoint='x.pth', val_acc=97.5,
                           test_acc=97.5, knn_test_acc=97.5), f)
    done = _run(study, '--dry-run')
    assert '3 of 3 planned runs done' in done.stdout, done.stdout
    other = _run(study, '--data-root', b, '--report-only')
    assert other.returncode == 0, other.stderr
    md = (tmp_path / 'out' / 'results.md').read_text()
    assert f'Data: `{b}`' in md and f'{data_fingerprint(b)}' in md
    assert '97.50' not in md and 'not run yet' in md
    dry = _run(study, '--data-root', b, '--dry-run')
    assert '0 of 3 planned runs done' in dry.stdout, dry.stdout
    # the same folder rewritten by the converter is other data
    root = _fake_package(tmp_path / 'pkg')
    copy = str(tmp_path / 'copy')
    prepare_elpv.prepare_elpv(copy, root=root)
    before = load_study(study, data_root=copy).runs_dir
    prepare_elpv.prepare_elpv(copy, root=root, seed=1)
    assert load_study(study, data_root=copy).runs_dir != before
    assert load_study(study, data_root=a).runs_dir == cfg.runs_dir


def test_study_refuses_a_copy_cut_short(tmp_path):
    """prepare_elpv.py killed half-way leaves a copy the study refuses in
    one line; the converter run again finishes it."""
    out = tmp_path / 'elpv'
    proc = subprocess.Popen([sys.executable, ELPV_TOOL, '--out', str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (
            out / prepare_elpv.MANIFEST).exists():
        time.sleep(0.002)
    time.sleep(0.1)  # some images copied
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    copied = sum(len(files) for _, _, files in os.walk(out / 'train'))
    if (out / prepare_elpv.STAMP).exists() or not copied:
        pytest.fail('the converter was not caught half-way')
    refused = _run(_study(tmp_path, str(out)), '--dry-run')
    assert refused.returncode == 1
    assert refused.stderr.startswith('error: ') and \
        refused.stderr.count('\n') == 1, refused.stderr
    assert f'{out} is an unfinished copy' in refused.stderr
    assert elpv_tool.main(['--out', str(out)]) == 0
    _check_folders(str(out))
    assert load_study(_study(tmp_path, str(out))).data_root == str(out)


def test_study_config_errors_are_one_line(tmp_path):
    """A misspelt top-level key, a config path that does not exist and an
    unreadable study config are refused in one line naming them."""
    data = tmp_path / 'data'
    for part in ('train', 'val', 'test'):
        (data / part / 'a').mkdir(parents=True)
    typo = _run(_study(tmp_path, str(data), lr_grd=[1e-3]), '--dry-run')
    assert typo.returncode == 1 and typo.stderr.count('\n') == 1
    assert "unknown key 'lr_grd'; did you mean 'lr_grid'?" in typo.stderr
    for extra, words in (
            (dict(finetune='configs/nope.py'),
             'finetune names configs/nope.py, which does not exist'),
            (dict(pretrain=dict(ummae='nope.py')),
             "pretrain['ummae'] names nope.py, which does not exist")):
        with pytest.raises(StudyError, match=re.escape(words)):
            load_study(_study(tmp_path, str(data), **extra))
    bad = tmp_path / 'bad.py'
    bad.write_text('arms = [\n')
    with pytest.raises(StudyError, match='bad.py: SyntaxError') as err:
        load_study(str(bad))
    assert '\n' not in str(err.value)


def test_label_fraction_below_one_batch_is_one_line(elpv, tmp_path, capsys):
    """A label fraction that leaves fewer images than one batch stops the
    fine-tuning worker with one line naming both and the fix."""
    data = _tiny_data(elpv[0], str(tmp_path / 'data'), dict(train=6))
    spec = tmp_path / 'run.json'
    spec.write_text(json.dumps(dict(
        kind='finetune', name='ft', seed=0, epochs=1, lr=1e-3,
        label_fraction=0.5, data_root=data, work_dir=str(tmp_path),
        config=osp.join(STUDY_DIR, 'swin-mini_elpv-128px_finetune.py'),
        options={'train_dataloader.batch_size': 8},
        data_fingerprint=data_fingerprint(data))))
    assert worker.main(str(spec)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ('error: label_fraction 0.5 leaves 6 training images, '
                       'fewer than one batch (8): raise label_fraction, or '
                       'lower the batch size (finetune_options '
                       'train_dataloader.batch_size)')
    assert not (tmp_path / 'result.json').exists()


def _children(pid):
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in os.listdir('/proc'):
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.mark.skipif(not osp.isdir('/proc'), reason='reads /proc')
def test_killing_the_runner_kills_its_worker(elpv, tmp_path):
    """The study runner killed (SIGKILL, nothing to clean up) takes its
    running worker with it: no orphan goes on training."""
    data = _tiny_data(elpv[0], str(tmp_path / 'data'),
                      dict(train=24, val=4, test=4))
    study = _study(tmp_path, data, pretrain_epochs=50)
    env = dict(os.environ, STUDY_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, RUNNER, study], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, workers = time.time() + 120, []
        while time.time() < deadline and not workers:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert workers, 'the runner started no worker'
        time.sleep(2)  # the worker is importing or training
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and any(map(_alive, workers)):
            time.sleep(0.2)
        assert not any(map(_alive, workers))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------- what users depend on
def test_linear_probe_weight_is_chosen_on_val(monkeypatch):
    """The probe's L2 weight is the one best on the validation split, and
    its test score is reported as measured, not chosen on test."""
    yva, yte = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 0, 1, 0])

    def fake_fit(x, y, num_classes, weight_decay, steps=200):
        # 1e-4: right on val, wrong on test; the others the other way
        def predict(z):
            target = yva if len(z) == len(yva) else yte
            good = (len(z) == len(yva)) == (weight_decay == 1e-4)
            return torch.nn.functional.one_hot(target if good else 1 - target,
                                               2).float()
        return predict

    monkeypatch.setattr(features, 'fit_linear', fake_fit)
    feats = dict(train=(torch.randn(8, 3), torch.tensor([0, 1] * 4)),
                 val=(torch.randn(4, 3), yva), test=(torch.randn(6, 3), yte))
    res = features.evaluate_frozen(feats)
    assert res['linear_weight_decay'] == 1e-4
    assert res['linear_val_acc'] == 100.0 and res['linear_test_acc'] == 0.0


def test_finetune_lr_ties_keep_the_first(tmp_path):
    """The fine-tuning lr is the best mean validation accuracy over the
    selection seeds; a tie keeps the first (smaller) lr of the grid."""
    data = tmp_path / 'data'
    for part in ('train', 'val', 'test'):
        (data / part / 'a').mkdir(parents=True)
    cfg = load_study(_study(tmp_path, str(data), lr_grid=[2e-3, 1e-3, 5e-4],
                            seeds=[0, 1], lr_select_seeds=[0, 1]))
    arm = cfg.arms[0]

    def chosen(accs):
        for run in plan_runs(cfg, {}):
            if run['kind'] == 'finetune':
                os.makedirs(osp.join(cfg.runs_dir, run.name), exist_ok=True)
                with open(osp.join(cfg.runs_dir, run.name, 'result.json'),
                          'w') as f:
                    json.dump(dict(wall_s=1.0, val_acc=accs[run['lr']][
                        run['seed']]), f)
        return choose_lr(cfg, arm, cfg.runs_dir)

    assert chosen({5e-4: [70, 80], 1e-3: [75, 75], 2e-3: [80, 70]}) == 5e-4
    assert chosen({5e-4: [70, 70], 1e-3: [75, 75], 2e-3: [80, 71]}) == 2e-3
    assert chosen({5e-4: [60, 70], 1e-3: [70, 70], 2e-3: [70, 70]}) == 1e-3


def test_a_collapsed_finetuning_is_a_failure_not_a_score(tmp_path):
    """An lr whose validation run predicts one class is not chosen however
    high its accuracy (the majority share); a test run that collapsed is
    listed as failed with its settings and kept out of the means."""
    data = tmp_path / 'data'
    for part in ('train', 'val', 'test'):
        (data / part / 'a').mkdir(parents=True)
    cfg = load_study(_study(tmp_path, str(data), lr_grid=[2e-3, 5e-4],
                            seeds=[0, 1, 2], lr_select_seeds=[0]))
    arm = cfg.arms[0]
    for run in plan_runs(cfg, {arm['name']: 5e-4}):
        if run['kind'] != 'finetune':
            continue
        collapsed = run['lr'] == 2e-3 or run['seed'] == 1
        os.makedirs(osp.join(cfg.runs_dir, run.name), exist_ok=True)
        with open(osp.join(cfg.runs_dir, run.name, 'result.json'), 'w') as f:
            json.dump(dict(wall_s=1.0, val_acc=68.8 if collapsed else 60.0,
                           val_collapsed=run['lr'] == 2e-3,
                           test_collapsed=collapsed, test_acc=68.8,
                           test_bal_acc=50.0, test_f1=40.0), f)
    assert choose_lr(cfg, arm, cfg.runs_dir) == 5e-4
    rows = collect(cfg, cfg.runs_dir, {arm['name']: 5e-4})
    assert [bool(r.get('collapsed')) for r in rows] == [False, True, False]
    assert 'test_acc' not in rows[1]
    md = markdown(cfg, rows, {arm['name']: 5e-4}, [])
    assert '| ummae | 2 | 68.80 ± 0.00 |' in md  # seeds 0 and 2 only
    assert 'collapsed to one class' in md and '| ummae | 1 |' in md
    assert '0.002: collapsed' in md


def test_set_epochs_stretches_the_schedule():
    """A longer or shorter run moves every scheduler that ended with the
    old run (the cosine, its T_max too) to the new end; warm-up stays."""
    def cfg():
        return Config(dict(train_cfg=dict(max_epochs=100), param_scheduler=[
            dict(type='LinearLR', begin=0, end=5),
            dict(type='CosineAnnealingLR', begin=5, end=100, T_max=95),
            dict(type='LinearLR', begin=5, end=100, start_factor=0.5)]))

    for epochs in (200, 50):
        c = cfg()
        worker.set_epochs(c, epochs)
        assert c.train_cfg.max_epochs == epochs
        warm, cosine, linear = c.param_scheduler
        assert warm.end == 5
        assert (cosine.end, cosine.T_max) == (epochs, epochs - 5)
        assert linear.end == epochs
    c = cfg()
    worker.set_epochs(c, 3)  # shorter than the warm-up: the warm-up, cut
    assert [(s.type, s.end) for s in c.param_scheduler] == [('LinearLR', 3)]
