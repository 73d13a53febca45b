"""One run of a study, in its own process:
``python -m mmumae_tools.study.worker RUN_JSON`` (a
:class:`~mmumae_tools.study.plan.Run` plus ``work_dir`` and
``pretrain_checkpoint``). Training runs train their config as
``tools/train.py`` builds it with only the study's changes, resume a killed
run, and (fine-tuning) evaluate the last weights on val and test; frozen
runs score the backbone's features. ``result.json`` marks the run done."""
import fcntl
import json
import os
import os.path as osp
import resource
import sys
import time
from typing import Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed

from runsafe import RunError, error_line

from mmumae_tools.cli import build_runner
from .features import evaluate_frozen, extract
from .plan import data_fingerprint, resolve_config
from .report import read_result

CKPT_SUFFIX = '.pth'
AS_WRITTEN = 'as written'
METRICS = {'accuracy/top1': 'acc', 'single-label/recall': 'bal_acc',
           'single-label/f1-score': 'f1', 'single-label/precision':
           'precision'}


def set_epochs(cfg: Config, epochs: int) -> None:
    """Train for ``epochs``: a scheduler that ran to the old end (the cosine)
    now runs to the new one; warm-up stays as it is, and a schedule shorter
    than the warm-up keeps only the warm-up, cut to ``epochs``."""
    old, cfg.train_cfg.max_epochs = cfg.train_cfg.max_epochs, epochs
    cfg.param_scheduler = [s for s in cfg.param_scheduler
                           if s.get('begin', 0) < epochs]
    for sched in cfg.param_scheduler:
        if sched.get('end') == old or sched.get('end', 0) > epochs:
            sched.end = epochs
            if 'T_max' in sched:
                sched.T_max = epochs - sched.get('begin', 0)


def label_subset(cfg: Config, fraction: float, seed: int) -> None:
    """Train on ``fraction`` of each class's training images (stratified,
    drawn with ``seed``), listed in an annotation file in the work dir."""
    ds, rng, lines = cfg.train_dataloader.dataset, np.random.RandomState(
        seed), []
    train = osp.join(ds.data_root, ds.data_prefix if isinstance(
        ds.data_prefix, str) else ds.data_prefix['img_path'])
    # class folders in the order mmpretrain's CustomDataset gives
    classes = sorted(d for d in os.listdir(train)
                     if osp.isdir(osp.join(train, d)))
    for label, name in enumerate(classes):
        files = sorted(os.listdir(osp.join(train, name)))
        keep = max(1, int(round(len(files) * fraction)))
        lines += [f'{name}/{files[i]} {label}'
                  for i in sorted(rng.permutation(len(files))[:keep])]
    batch = cfg.train_dataloader.batch_size
    if len(lines) < batch:
        raise RunError(f'label_fraction {fraction} leaves {len(lines)} '
                       f'training images, fewer than one batch ({batch}): '
                       f'raise label_fraction, or lower the batch size '
                       f'(finetune_options train_dataloader.batch_size)')
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
    """``config`` (relative: to the cwd, else the repository) as
    ``tools/train.py`` reads it, with the arm's ``--cfg-options`` style
    ``options``, then the study's data root, seed, epochs, lr, label subset
    and backbone checkpoint (None: random init; :data:`AS_WRITTEN`: the
    config's own)."""
    cfg = Config.fromfile(resolve_config(config))
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
    """Train :func:`study_config` as ``tools/train.py`` builds it, resuming
    from the work dir's checkpoint if there is one; the runner."""
    cfg = study_config(config, work_dir, **overrides)
    if has_checkpoint(work_dir):
        cfg.resume, cfg.load_from = True, None
    runner = build_runner(cfg)
    runner.train()
    return runner


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children
    (the data-loader workers): the run's cost, whatever else the machine
    runs."""
    own, kids = (resource.getrusage(who) for who in (
        resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@torch.no_grad()
def predicted_classes(model: torch.nn.Module, loader) -> set:
    """The classes a classifier predicts on ``loader``: one class for every
    image is a collapse, not a result."""
    model.eval()
    return {int(sample.pred_label) for batch in loader
            for sample in model.test_step(batch)}


def run_training(run: dict) -> dict:
    """Pre-train (the result names the last checkpoint), or fine-tune,
    evaluate on val and test and remove the checkpoints (unless
    ``keep_checkpoints``)."""
    keys = ('data_root', 'seed', 'epochs', 'lr', 'label_fraction', 'options')
    overrides = {k: run[k] for k in keys if k in run}
    if run['kind'] != 'pretrain':
        overrides['backbone_init'] = run.get('pretrain_checkpoint')
    work_dir, start, cpu = run['work_dir'], time.perf_counter(), cpu_seconds()
    result = dict(resumed=has_checkpoint(work_dir))
    runner = train_config(run['config'], work_dir, **overrides)
    hub = runner.message_hub
    result.update(wall_s=time.perf_counter() - start,
                  cpu_s=cpu_seconds() - cpu, final_loss=float(
        hub.get_scalar('train/loss').current())
        if 'train/loss' in hub.log_scalars else None)
    if run['kind'] == 'pretrain':
        ckpt = osp.join(work_dir, f'epoch_{run["epochs"]}.pth')
        if not osp.isfile(ckpt):
            raise RuntimeError(f'pre-training finished without {ckpt}')
        return dict(result, checkpoint=osp.abspath(ckpt))
    result['train_images'] = len(runner.train_dataloader.dataset)
    for split, metrics in (('val', runner.val()), ('test', runner.test())):
        result.update({f'{split}_{METRICS[k]}': float(v)
                       for k, v in metrics.items() if k in METRICS})
        loader = getattr(runner, f'{split}_dataloader')
        result[f'{split}_collapsed'] = len(predicted_classes(
            runner.model, loader)) == 1
    for name in os.listdir(work_dir):
        if not run.get('keep_checkpoints') and (
                name.endswith(CKPT_SUFFIX) or name == 'last_checkpoint'):
            os.remove(osp.join(work_dir, name))
    return result


def build_model(cfg: Config) -> torch.nn.Module:
    """The config's model, initialised, with the config's
    ``data_preprocessor`` as mmengine's Runner gives it."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def run_frozen(run: dict) -> dict:
    """kNN and linear probe on the frozen backbone's features of the three
    splits (train through the test pipeline)."""
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
    study process sharing the runs_dir finished it (one worker per run at a
    time: the lock); write its ``result.json``."""
    with open(path) as f:
        run = json.load(f)
    lock = os.open(osp.join(run['work_dir'], 'study.lock'),
                   os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(lock, fcntl.LOCK_EX)
    if read_result(*osp.split(run['work_dir'])) is not None:
        print(f'{run["name"]}: finished by another study process')
        return 0
    torch.set_num_threads(int(os.environ.get('STUDY_THREADS', '0'))
                          or torch.get_num_threads())
    data = dict(data_root=run.get('data_root'),
                data_fingerprint=run.get('data_fingerprint'))
    try:
        if data['data_fingerprint'] not in (
                None, data_fingerprint(data['data_root'])):
            raise RunError(f'the data in {data["data_root"]} changed since '
                           f'the study planned this run; run the study again')
        result = (run_frozen if run['kind'] == 'frozen' else
                  run_training)(run)
    except RunError as err:
        print(f'error: {error_line(err)}', file=sys.stderr)
        return 1
    result.update(data, kind=run['kind'], name=run['name'], seed=run['seed'])
    tmp = osp.join(run['work_dir'], 'result.json.tmp')
    with open(tmp, 'w') as f:  # complete or absent: written, then renamed
        json.dump(result, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, osp.join(run['work_dir'], 'result.json'))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
