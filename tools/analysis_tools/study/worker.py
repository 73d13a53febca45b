"""Do one run of a study in this process (the study runner starts one
process per run): ``python tools/analysis_tools/study/worker.py RUN_JSON``.

``RUN_JSON`` holds a :class:`plan.Run` plus ``work_dir`` (the run's folder)
and ``pretrain_checkpoint`` (for runs that start from one). The run trains
through mmengine's Runner, built from the mmumae config as ``tools/train.py``
builds it; a run whose folder already holds a checkpoint resumes from it.
On success it writes ``result.json`` there (the runner's sign that the run
is finished).

- ``pretrain``: ``runner.train()``; the result has the wall time of
  training and the last checkpoint.
- ``finetune``: ``runner.train()``, then ``runner.val()`` (the validation
  split, for choosing the lr) and ``runner.test()`` (the test split), with
  the config's evaluators (accuracy; macro precision, recall = balanced
  accuracy, F1). The last epoch's weights are evaluated: nothing is chosen
  on the test split.
- ``frozen``: features of the backbone (pre-trained, or randomly
  initialised for the from-scratch arm) on train/val/test, then a weighted
  kNN and a linear probe (:mod:`features`).
"""
import fcntl
import json
import os
import os.path as osp
import sys
import time

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.abspath(osp.join(HERE, '..', '..', '..'))
sys.path[:0] = [ROOT, HERE]

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import RUNNERS, init_default_scope  # noqa: E402
from mmengine.runner import Runner, set_random_seed  # noqa: E402

import mmumae  # noqa: E402,F401
from features import evaluate_frozen, extract  # noqa: E402

CKPT_SUFFIX = '.pth'


def class_names(folder: str):
    """Class sub-folders in the order mmpretrain's CustomDataset gives."""
    return sorted(d for d in os.listdir(folder)
                  if osp.isdir(osp.join(folder, d)))


def set_data_root(cfg: Config, data_root: str) -> None:
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader is not None:
            loader.dataset.data_root = data_root


def set_epochs(cfg: Config, epochs: int) -> None:
    """Train for ``epochs``: a scheduler that ran to the old end (the cosine)
    now runs to the new one; warm-up stays as it is, and a schedule shorter
    than the warm-up keeps only the warm-up, cut to ``epochs``."""
    old = cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = epochs
    kept = []
    for sched in cfg.param_scheduler:
        if sched.get('begin', 0) >= epochs:
            continue
        if sched.get('end') == old or sched.get('end', 0) > epochs:
            sched.end = epochs
            if 'T_max' in sched:
                sched.T_max = epochs - sched.get('begin', 0)
        kept.append(sched)
    cfg.param_scheduler = kept


def label_subset(cfg: Config, data_root: str, fraction: float, seed: int,
                 work_dir: str) -> str:
    """Write an annotation file with ``fraction`` of each class's training
    images (stratified; which images depends on ``seed``)."""
    train = osp.join(data_root, cfg.train_dataloader.dataset.data_prefix)
    rng = np.random.RandomState(seed)
    lines = []
    for label, name in enumerate(class_names(train)):
        files = sorted(os.listdir(osp.join(train, name)))
        keep = max(1, int(round(len(files) * fraction)))
        for i in sorted(rng.permutation(len(files))[:keep]):
            lines.append(f'{name}/{files[i]} {label}')
    path = osp.abspath(osp.join(work_dir, 'train_subset.txt'))
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def build_cfg(run: dict) -> Config:
    cfg = Config.fromfile(osp.join(ROOT, run['config'])
                          if not osp.isabs(run['config']) else run['config'])
    if run.get('options'):
        cfg.merge_from_dict(run['options'])
    set_data_root(cfg, run['data_root'])
    cfg.randomness = dict(seed=run['seed'], diff_rank_seed=True,
                          deterministic=False)
    cfg.work_dir = run['work_dir']
    if run.get('pretrain_checkpoint'):
        cfg.model.backbone.init_cfg = dict(
            type='Pretrained', checkpoint=run['pretrain_checkpoint'],
            prefix='backbone.')
    elif run['kind'] != 'pretrain':
        cfg.model.backbone.init_cfg = None
    return cfg


def has_checkpoint(work_dir: str) -> bool:
    return osp.isdir(work_dir) and any(
        n.endswith(CKPT_SUFFIX) for n in os.listdir(work_dir))


def build_runner(cfg: Config) -> Runner:
    cfg.resume = has_checkpoint(cfg.work_dir)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def last_loss(runner: Runner):
    try:
        return float(runner.message_hub.get_scalar('train/loss').current())
    except KeyError:
        return None


def run_pretrain(run: dict) -> dict:
    cfg = build_cfg(run)
    set_epochs(cfg, run['epochs'])
    resumed = has_checkpoint(cfg.work_dir)
    runner = build_runner(cfg)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    ckpt = osp.join(cfg.work_dir, f'epoch_{run["epochs"]}.pth')
    if not osp.isfile(ckpt):
        raise RuntimeError(f'pre-training finished without {ckpt}')
    return dict(wall_s=wall, resumed=resumed, checkpoint=osp.abspath(ckpt),
                final_loss=last_loss(runner))


def _metrics(prefix: str, metrics: dict) -> dict:
    names = {'accuracy/top1': 'acc', 'single-label/recall': 'bal_acc',
             'single-label/f1-score': 'f1',
             'single-label/precision': 'precision'}
    return {f'{prefix}_{names[k]}': float(v) for k, v in metrics.items()
            if k in names}


def run_finetune(run: dict) -> dict:
    cfg = build_cfg(run)
    set_epochs(cfg, run['epochs'])
    cfg.optim_wrapper.optimizer.lr = run['lr']
    cfg.train_cfg.val_interval = run['epochs'] + 1  # evaluated once, below
    cfg.default_hooks.checkpoint.save_best = None
    os.makedirs(cfg.work_dir, exist_ok=True)
    if run.get('label_fraction', 1.0) < 1.0:
        ds = cfg.train_dataloader.dataset
        train = osp.join(run['data_root'], ds.data_prefix)
        ds.ann_file = label_subset(cfg, run['data_root'],
                                   run['label_fraction'], run['seed'],
                                   cfg.work_dir)
        ds.metainfo = dict(classes=class_names(train))
    resumed = has_checkpoint(cfg.work_dir)
    runner = build_runner(cfg)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    result = dict(wall_s=wall, resumed=resumed, final_loss=last_loss(runner),
                  train_images=len(runner.train_dataloader.dataset))
    result.update(_metrics('val', runner.val()))
    result.update(_metrics('test', runner.test()))
    if not run.get('keep_checkpoints', False):
        for name in os.listdir(cfg.work_dir):
            if name.endswith(CKPT_SUFFIX) or name == 'last_checkpoint':
                os.remove(osp.join(cfg.work_dir, name))
    return result


def build_model(cfg: Config):
    """The config's model, initialised (``init_cfg`` loads a checkpoint),
    with the config's ``data_preprocessor`` (mean, std, to_rgb) as mmengine's
    Runner gives it, unless the model names its own."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def run_frozen(run: dict) -> dict:
    cfg = build_cfg(run)
    set_random_seed(run['seed'])
    model = build_model(cfg)
    start = time.perf_counter()
    feats = {}
    for split, key in (('train', 'train_dataloader'),
                       ('val', 'val_dataloader'),
                       ('test', 'test_dataloader')):
        loader = cfg[key].copy()
        if split == 'train':
            # the evaluation pipeline, every image once, in order
            loader.dataset.pipeline = cfg.test_dataloader.dataset.pipeline
            loader.sampler = dict(type='DefaultSampler', shuffle=False)
            loader.drop_last = False
            loader.batch_size = cfg.test_dataloader.batch_size
        feats[split] = extract(model, Runner.build_dataloader(
            loader, seed=run['seed']))
    result = evaluate_frozen(feats, seed=run['seed'])
    result['wall_s'] = time.perf_counter() - start
    result['feature_dim'] = int(feats['train'][0].shape[1])
    return result


def main(path: str) -> int:
    with open(path) as f:
        run = json.load(f)
    # One worker per run at a time, across study processes sharing a
    # runs_dir: wait for another one to finish the run, then find its
    # result instead of running it again.
    lock = os.open(osp.join(run['work_dir'], 'study.lock'),
                   os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(lock, fcntl.LOCK_EX)
    if osp.isfile(osp.join(run['work_dir'], 'result.json')):
        print(f'{run["name"]}: finished by another study process')
        return 0
    torch.set_num_threads(int(os.environ.get('STUDY_THREADS', '0'))
                          or torch.get_num_threads())
    fn = dict(pretrain=run_pretrain, finetune=run_finetune,
              frozen=run_frozen)[run['kind']]
    result = fn(run)
    result.update(kind=run['kind'], name=run['name'], seed=run['seed'])
    tmp = osp.join(run['work_dir'], 'result.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, osp.join(run['work_dir'], 'result.json'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
