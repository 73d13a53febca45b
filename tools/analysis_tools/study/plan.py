"""Turn a study config into the list of runs to do, in dependency order.

A study config is an mmengine config file (``configs/studies/elpv/*.py``)
with these keys:

``data_root``
    An ImageNet-layout folder: ``train/``, ``val/`` and ``test/``, each with
    one sub-folder per class. ``--data-root`` overrides it.
``work_dir``
    Where the results go (default ``work_dirs/studies/<study file name>``).
``runs_dir``
    Where the runs go, one folder each (default ``<work_dir>/runs``).
    Studies that name the same ``runs_dir`` share the runs whose settings
    are equal (the quick study is the main one's first seed).
``pretrain``
    ``{name: config file}`` of the pre-training methods.
``finetune``
    The classification config every arm fine-tunes (and whose backbone gives
    the frozen features).
``seeds``, ``pretrain_epochs``, ``finetune_epochs``, ``lr_grid``,
``lr_select_seeds``
    Defaults of every arm. The fine-tuning lr of an arm is the one in
    ``lr_grid`` with the best mean validation accuracy over
    ``lr_select_seeds`` (ties: the smaller lr); the other seeds run that lr
    only.
``arms``
    A list of dicts: ``name``; ``pretrain`` (a key of ``pretrain``, or
    ``None`` for random init); optional ``pretrain_epochs``,
    ``pretrain_options`` and ``finetune_options`` (mmengine
    ``--cfg-options`` style dicts), ``label_fraction`` (share of the
    training labels used in fine-tuning, stratified per class),
    ``finetune_epochs``, ``lr_grid``, ``seeds``, ``evaluations``,
    ``lr_from`` (fine-tune with the lr chosen for another arm, e.g. in
    ablations), ``group`` (the table the arm is reported in).
``evaluations``
    Any of ``'finetune'``, ``'knn'``, ``'linear'`` (the last two on frozen
    features of the pre-trained, or randomly initialised, backbone).
"""
import hashlib
import json
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config

EVALUATIONS = ('finetune', 'knn', 'linear')
ARM_KEYS = {
    'name', 'pretrain', 'pretrain_epochs', 'pretrain_options',
    'finetune_options', 'label_fraction', 'finetune_epochs', 'lr_grid',
    'seeds', 'evaluations', 'lr_select_seeds', 'group', 'lr_from'
}


class StudyError(ValueError):
    """A problem with a study config, explained in one line."""


def _slug(options: Optional[dict]) -> str:
    """A short, stable name for a set of config options: the last part of
    each key and its value (``_sm_ratio0.5``), or a hash when that is long
    or not a plain name."""
    if not options:
        return ''
    parts = []
    for key in sorted(options):
        value = options[key]
        if not isinstance(value, (int, float, str, bool)):
            break
        parts.append(f'{key.split(".")[-1]}{value:g}' if isinstance(
            value, float) else f'{key.split(".")[-1]}{value}')
    else:
        text = '-'.join(parts)
        if len(text) <= 40 and all(c.isalnum() or c in '._-' for c in text):
            return '_' + text
    text = json.dumps(options, sort_keys=True, default=str)
    return '_' + hashlib.sha1(text.encode()).hexdigest()[:8]


def _num(value: float) -> str:
    return f'{value:g}'


class Run(dict):
    """One unit of work: ``kind`` (pretrain / frozen / finetune), ``name``
    (its folder), ``config``, ``seed`` and what the worker needs."""

    @property
    def name(self) -> str:
        return self['name']


def load_study(path: str, data_root: Optional[str] = None,
               work_dir: Optional[str] = None,
               seeds: Optional[List[int]] = None) -> Config:
    """Read and check a study config; fill in the defaults."""
    if not osp.isfile(path):
        raise StudyError(f'study config not found: {path}')
    cfg = Config.fromfile(path)
    name = osp.splitext(osp.basename(path))[0]
    cfg.study_name = name
    if data_root:
        cfg.data_root = data_root
    if work_dir:
        cfg.work_dir = work_dir
    cfg.setdefault('work_dir', osp.join('work_dirs', 'studies', name))
    cfg.setdefault('runs_dir', osp.join(cfg.work_dir, 'runs'))
    for key in ('data_root', 'finetune', 'arms'):
        if key not in cfg:
            raise StudyError(f'{path}: the study config has no {key!r}')
    cfg.setdefault('pretrain', {})
    cfg.setdefault('seeds', [0])
    if seeds is not None:
        cfg.seeds = list(seeds)
    cfg.setdefault('pretrain_epochs', 50)
    cfg.setdefault('finetune_epochs', 15)
    cfg.setdefault('lr_grid', [1e-3])
    cfg.setdefault('lr_select_seeds', cfg.seeds[:1])
    cfg.setdefault('evaluations', list(EVALUATIONS))
    for part in ('train', 'val', 'test'):
        if not osp.isdir(osp.join(cfg.data_root, part)):
            hint = cfg.get('data_hint', 'give --data-root an ImageNet-'
                           'layout folder with train/, val/ and test/')
            raise StudyError(f'{osp.join(cfg.data_root, part)} is missing: '
                             f'{hint}')
    names = set()
    names_all = {a.get('name') for a in cfg.arms}
    for arm in cfg.arms:
        unknown = set(arm) - ARM_KEYS
        if unknown:
            raise StudyError(f'{path}: arm {arm.get("name")!r} has unknown '
                             f'keys {sorted(unknown)}; known: '
                             f'{sorted(ARM_KEYS)}')
        if 'name' not in arm:
            raise StudyError(f'{path}: every arm needs a name')
        if arm['name'] in names:
            raise StudyError(f'{path}: two arms are called {arm["name"]!r}')
        names.add(arm['name'])
        pre = arm.get('pretrain')
        if pre is not None and pre not in cfg.pretrain:
            raise StudyError(f'{path}: arm {arm["name"]!r} pre-trains with '
                             f'{pre!r}, which is not one of pretrain='
                             f'{sorted(cfg.pretrain)}')
        bad = set(arm.get('evaluations', cfg.evaluations)) - set(EVALUATIONS)
        if bad:
            raise StudyError(f'{path}: unknown evaluations {sorted(bad)}; '
                             f'choose from {list(EVALUATIONS)}')
        src = arm.get('lr_from')
        if src is not None and src not in names_all:
            raise StudyError(f'{path}: arm {arm["name"]!r} takes its lr '
                             f'from {src!r}, which is not an arm')
        frac = arm.get('label_fraction', 1.0)
        if not 0.0 < frac <= 1.0:
            raise StudyError(f'{path}: arm {arm["name"]!r}: label_fraction '
                             f'must be in (0, 1], got {frac}')
    return cfg


def arm_setting(cfg: Config, arm: dict, key: str):
    return arm.get(key, cfg.get(key))


def pretrain_run(cfg: Config, arm: dict, seed: int) -> Optional[Run]:
    pre = arm.get('pretrain')
    if pre is None:
        return None
    epochs = arm_setting(cfg, arm, 'pretrain_epochs')
    options = arm.get('pretrain_options') or {}
    name = f'pre_{pre}_e{epochs}{_slug(options)}_s{seed}'
    return Run(kind='pretrain', name=name, method=pre,
               config=cfg.pretrain[pre], seed=seed, epochs=epochs,
               options=options, data_root=cfg.data_root)


def _start(pre: Optional[Run]) -> str:
    return pre['name'][len('pre_'):].rsplit('_s', 1)[0] if pre else 'scratch'


def frozen_run(cfg: Config, arm: dict, seed: int,
               pre: Optional[Run]) -> Run:
    return Run(kind='frozen', name=f'frozen_{_start(pre)}_s{seed}',
               config=cfg.finetune, seed=seed, pretrain=pre and pre.name,
               data_root=cfg.data_root)


def finetune_run(cfg: Config, arm: dict, seed: int, pre: Optional[Run],
                 lr: float) -> Run:
    epochs = arm_setting(cfg, arm, 'finetune_epochs')
    frac = arm.get('label_fraction', 1.0)
    options = arm.get('finetune_options') or {}
    name = (f'ft_{_start(pre)}{_slug(options)}'
            f'{"" if frac == 1.0 else "_labels" + _num(frac)}'
            f'_e{epochs}_lr{_num(lr)}_s{seed}')
    return Run(kind='finetune', name=name, config=cfg.finetune, seed=seed,
               pretrain=pre and pre.name, lr=lr, epochs=epochs,
               label_fraction=frac, options=options, data_root=cfg.data_root)


def plan_runs(cfg: Config, chosen_lr: Dict[str, float]) -> List[Run]:
    """Every run of the study, seed by seed (the first seed's table is
    complete before the second seed starts). ``chosen_lr`` maps an arm to
    its selected lr once the selection runs are done; until then the other
    seeds' fine-tuning runs are left out."""
    runs, seen = [], set()

    def add(run):
        if run is not None and run.name not in seen:
            seen.add(run.name)
            runs.append(run)

    seed_order = []
    for arm in cfg.arms:
        for s in arm.get('seeds', cfg.seeds):
            if s not in seed_order:
                seed_order.append(s)
    for seed in seed_order:
        for arm in cfg.arms:
            if seed not in arm.get('seeds', cfg.seeds):
                continue
            pre = pretrain_run(cfg, arm, seed)
            add(pre)
            evals = arm.get('evaluations', cfg.evaluations)
            if 'knn' in evals or 'linear' in evals:
                add(frozen_run(cfg, arm, seed, pre))
            if 'finetune' in evals:
                for lr in lrs_to_run(cfg, arm, seed, chosen_lr):
                    add(finetune_run(cfg, arm, seed, pre, lr))
    return runs


def lrs_to_run(cfg: Config, arm: dict, seed: int,
               chosen_lr: Dict[str, float]) -> List[float]:
    if arm.get('lr_from'):
        lr = chosen_lr.get(arm['lr_from'])
        return [] if lr is None else [lr]
    grid = list(arm_setting(cfg, arm, 'lr_grid'))
    select = arm.get('lr_select_seeds', cfg.lr_select_seeds)
    if len(grid) == 1 or seed in select:
        return grid
    if arm['name'] in chosen_lr:
        return [chosen_lr[arm['name']]]
    return []
