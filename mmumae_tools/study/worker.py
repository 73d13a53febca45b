"""Do one run of a study in this process (the study runner starts one
process per run): ``python -m mmumae_tools.study.worker RUN_JSON``.

``RUN_JSON`` holds a :class:`~mmumae_tools.study.plan.Run` plus
``work_dir`` (the run's folder) and ``pretrain_checkpoint`` (for runs that
start from one). A run trains its config as written, built as
``tools/train.py`` builds it, with only the study's overrides (data root,
seed, epochs, lr, label subset, backbone checkpoint, the arm's options);
a run whose folder already holds a checkpoint resumes from it. On success
it writes ``result.json`` there (the runner's sign that the run is done).

- ``pretrain``: ``runner.train()``; the result has the wall time of
  training and the last checkpoint.
- ``finetune``: ``runner.train()``, then ``runner.val()`` (the validation
  split, for choosing the lr) and ``runner.test()`` (the test split), with
  the config's evaluators (accuracy; macro precision, recall = balanced
  accuracy, F1). The last epoch's weights are evaluated: nothing is chosen
  on the test split.
- ``frozen``: features of the backbone (pre-trained, or randomly
  initialised for the from-scratch arm) on train/val/test, then a weighted
  kNN and a linear probe (:mod:`~mmumae_tools.study.features`).
"""
import fcntl
import json
import os
import os.path as osp
import sys
import time
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner, set_random_seed

from runsafe import RunError, error_line
from .features import evaluate_frozen, extract

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CKPT_SUFFIX = '.pth'
#: ``backbone_init`` that keeps the config's own ``init_cfg``.
AS_WRITTEN = 'as written'
METRICS = {'accuracy/top1': 'acc', 'single-label/recall': 'bal_acc',
           'single-label/f1-score': 'f1', 'single-label/precision':
           'precision'}


def class_names(folder: str) -> List[str]:
    """Class sub-folders in the order mmpretrain's CustomDataset gives."""
    return sorted(d for d in os.listdir(folder)
                  if osp.isdir(osp.join(folder, d)))


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


def label_subset(cfg: Config, fraction: float, seed: int) -> None:
    """Train on ``fraction`` of each class's training images (stratified;
    which images depends on ``seed``), listed in an annotation file in the
    work dir."""
    ds = cfg.train_dataloader.dataset
    prefix = ds.data_prefix
    train = osp.join(ds.data_root, prefix if isinstance(prefix, str)
                     else prefix['img_path'])
    rng, lines = np.random.RandomState(seed), []
    classes = class_names(train)
    for label, name in enumerate(classes):
        files = sorted(os.listdir(osp.join(train, name)))
        keep = max(1, int(round(len(files) * fraction)))
        lines += [f'{name}/{files[i]} {label}'
                  for i in sorted(rng.permutation(len(files))[:keep])]
    os.makedirs(cfg.work_dir, exist_ok=True)
    ds.ann_file = osp.abspath(osp.join(cfg.work_dir, 'train_subset.txt'))
    with open(ds.ann_file, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    ds.metainfo = dict(classes=classes)


def study_config(config: str, work_dir: str, data_root: Optional[str] = None,
                 seed: Optional[int] = None, epochs: Optional[int] = None,
                 lr: Optional[float] = None, label_fraction: float = 1.0,
                 options: Optional[dict] = None,
                 backbone_init: Optional[str] = AS_WRITTEN) -> Config:
    """``config`` as ``tools/train.py`` reads it, with the study's overrides.

    Args:
        config (str): The config file (relative: to the cwd, else to the
            repository).
        work_dir (str): The run's folder.
        data_root (str, optional): ``data_root`` of every dataloader.
        seed (int, optional): ``randomness.seed``.
        epochs (int, optional): ``max_epochs``, schedulers moved along
            (:func:`set_epochs`).
        lr (float, optional): The optimizer's lr.
        label_fraction (float): Share of each class's training images.
        options (dict, optional): ``--cfg-options`` style changes (the
            study arm's options), merged first.
        backbone_init (str, optional): A checkpoint for the backbone, None
            for random init; :data:`AS_WRITTEN` keeps the config's.
    """
    if not osp.isfile(config) and not osp.isabs(config):
        config = osp.join(REPO, config)
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    cfg.work_dir = work_dir
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if data_root is not None and cfg.get(key) is not None:
            cfg[key].dataset.data_root = data_root
    if seed is not None:
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    if epochs is not None:
        set_epochs(cfg, epochs)
    if lr is not None:
        cfg.optim_wrapper.optimizer.lr = lr
    if label_fraction < 1.0:
        label_subset(cfg, label_fraction, seed or 0)
    if backbone_init != AS_WRITTEN:
        cfg.model.backbone.init_cfg = backbone_init and dict(
            type='Pretrained', checkpoint=backbone_init, prefix='backbone.')
    return cfg


def has_checkpoint(work_dir: str) -> bool:
    """Whether ``work_dir`` holds a checkpoint (a run to resume)."""
    return osp.isdir(work_dir) and any(
        n.endswith(CKPT_SUFFIX) for n in os.listdir(work_dir))


def train_config(config: str, work_dir: str, **overrides) -> Runner:
    """Build ``config`` with the study's ``overrides`` (see
    :func:`study_config`) as ``tools/train.py`` does, resuming from the
    work dir's checkpoint if there is one (as ``--resume``), and train it.

    Returns:
        Runner: The runner, after ``train()``.
    """
    cfg = study_config(config, work_dir, **overrides)
    if has_checkpoint(work_dir):
        cfg.resume, cfg.load_from = True, None
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg \
        else Runner.from_cfg(cfg)
    runner.train()
    return runner


def _train_run(run: dict) -> dict:
    """Train a pretrain or finetune run; its result so far."""
    keys = ('data_root', 'seed', 'epochs', 'lr', 'label_fraction', 'options')
    overrides = {k: run[k] for k in keys if k in run}
    if run['kind'] != 'pretrain':
        overrides['backbone_init'] = run.get('pretrain_checkpoint')
    resumed = has_checkpoint(run['work_dir'])
    start = time.perf_counter()
    runner = train_config(run['config'], run['work_dir'], **overrides)
    try:
        loss = float(runner.message_hub.get_scalar('train/loss').current())
    except KeyError:
        loss = None
    return dict(wall_s=time.perf_counter() - start, resumed=resumed,
                final_loss=loss, runner=runner)


def run_pretrain(run: dict) -> dict:
    """Pre-train; the result names the last checkpoint."""
    result = _train_run(run)
    ckpt = osp.join(run['work_dir'], f'epoch_{run["epochs"]}.pth')
    if not osp.isfile(ckpt):
        raise RuntimeError(f'pre-training finished without {ckpt}')
    result.pop('runner')
    return dict(result, checkpoint=osp.abspath(ckpt))


def run_finetune(run: dict) -> dict:
    """Fine-tune, then evaluate the last weights on val and test; the
    checkpoints are removed unless ``keep_checkpoints``."""
    result = _train_run(run)
    runner = result.pop('runner')
    result['train_images'] = len(runner.train_dataloader.dataset)
    for split, metrics in (('val', runner.val()), ('test', runner.test())):
        result.update({f'{split}_{METRICS[k]}': float(v)
                       for k, v in metrics.items() if k in METRICS})
    if not run.get('keep_checkpoints', False):
        for name in os.listdir(run['work_dir']):
            if name.endswith(CKPT_SUFFIX) or name == 'last_checkpoint':
                os.remove(osp.join(run['work_dir'], name))
    return result


def build_model(cfg: Config) -> torch.nn.Module:
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
    """kNN and linear probe on the frozen backbone's features of the three
    splits (train through the evaluation pipeline, in order)."""
    cfg = study_config(run['config'], run['work_dir'], run['data_root'],
                       run['seed'],
                       backbone_init=run.get('pretrain_checkpoint'))
    set_random_seed(run['seed'])
    model = build_model(cfg)
    start = time.perf_counter()
    test = cfg.test_dataloader
    train = dict(cfg.train_dataloader, sampler=dict(
        type='DefaultSampler', shuffle=False), drop_last=False,
        batch_size=test.batch_size,
        dataset=dict(cfg.train_dataloader.dataset,
                     pipeline=test.dataset.pipeline))
    feats = {split: extract(model, Runner.build_dataloader(
        loader, seed=run['seed'])) for split, loader in (
            ('train', train), ('val', cfg.val_dataloader), ('test', test))}
    result = evaluate_frozen(feats, seed=run['seed'])
    return dict(result, wall_s=time.perf_counter() - start,
                feature_dim=int(feats['train'][0].shape[1]))


def main(path: str) -> int:
    """Do the run that ``path`` (a run.json) describes, unless another
    study process finished it; write its ``result.json``."""
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
    try:
        result = fn(run)
    except RunError as err:
        print(f'error: {error_line(err)}', file=sys.stderr)
        return 1
    result.update(kind=run['kind'], name=run['name'], seed=run['seed'])
    tmp = osp.join(run['work_dir'], 'result.json.tmp')
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, osp.join(run['work_dir'], 'result.json'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
