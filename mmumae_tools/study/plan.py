"""A study config (an mmengine config file; its keys:
``configs/studies/elpv/README.md``) -> the runs to do, in dependency
order."""
import difflib
import hashlib
import json
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config

from mmumae_tools.elpv import MANIFEST, STAMP

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EVALUATIONS = ('finetune', 'knn', 'linear')
ARM_KEYS = {
    'name', 'pretrain', 'pretrain_epochs', 'pretrain_options',
    'finetune_options', 'label_fraction', 'finetune_epochs', 'lr_grid',
    'seeds', 'evaluations', 'lr_select_seeds', 'group', 'lr_from'
}
DEFAULTS = dict(pretrain={}, seeds=[0], pretrain_epochs=50, finetune_epochs=15,
                lr_grid=[1e-3], evaluations=list(EVALUATIONS))
#: Study keys an arm may set for itself (filled in from the study's).
ARM_DEFAULTS = ('seeds', 'pretrain_epochs', 'finetune_epochs', 'lr_grid',
                'evaluations', 'lr_select_seeds')
STUDY_KEYS = set(DEFAULTS) | set(ARM_DEFAULTS) | {
    'data_root', 'data_hint', 'work_dir', 'runs_dir', 'finetune', 'arms'}


class StudyError(ValueError):
    """A problem with a study config, explained in one line."""


class Run(dict):
    """One run: ``kind`` (pretrain / frozen / finetune), ``name`` (its
    folder), ``config``, ``seed`` and what the worker needs."""

    @property
    def name(self) -> str:
        """The run's folder name in ``runs_dir``."""
        return self['name']


def _slug(options: Optional[dict]) -> str:
    """A short, stable name for config options: the last part of each key
    and its value (``_sm_ratio0.5``), else a hash of them."""
    if not options:
        return ''
    text = '-'.join(f'{k.split(".")[-1]}{options[k]:g}' if isinstance(
        options[k], float) else f'{k.split(".")[-1]}{options[k]}'
        for k in sorted(options))
    if len(text) <= 40 and all(c.isalnum() or c in '._-' for c in text) \
            and all(isinstance(v, (int, float, str, bool))
                    for v in options.values()):
        return '_' + text
    text = json.dumps(options, sort_keys=True, default=str)
    return '_' + hashlib.sha1(text.encode()).hexdigest()[:8]


def load_study(path: str, data_root: Optional[str] = None,
               work_dir: Optional[str] = None,
               seeds: Optional[List[int]] = None) -> Config:
    """Read and check a study config; fill in the defaults, the arms'
    included (:data:`ARM_DEFAULTS`), and the data's fingerprint; its runs
    go to ``<runs_dir>/data-<fingerprint>``.

    Raises:
        StudyError: A missing file, key, config, data split or finished
            data copy, an unknown key, or a bad arm.
    """
    if not osp.isfile(path):
        raise StudyError(f'study config not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:  # whatever the config's Python raises
        raise StudyError(f'{path}: {type(err).__name__}: {err}'.splitlines(
        )[0]) from None
    for key in sorted(k for k in cfg if k not in STUDY_KEYS
                      and not k.startswith('_')):
        near = difflib.get_close_matches(key, STUDY_KEYS, 1)
        raise StudyError(f'{path}: unknown key {key!r}' + (
            f'; did you mean {near[0]!r}?' if near else
            f'; known keys: {sorted(STUDY_KEYS)}'))
    cfg.study_name = osp.splitext(osp.basename(path))[0]
    for key, value in (('data_root', data_root), ('work_dir', work_dir),
                       ('seeds', seeds and list(seeds))):
        if value:
            cfg[key] = value
    for key in ('data_root', 'finetune', 'arms'):
        if key not in cfg:
            raise StudyError(f'{path}: the study config has no {key!r}')
    cfg.setdefault('work_dir', f'work_dirs/studies/{cfg.study_name}')
    cfg.setdefault('runs_dir', osp.join(cfg.work_dir, 'runs'))
    for key, value in DEFAULTS.items():
        cfg.setdefault(key, value)
    cfg.setdefault('lr_select_seeds', cfg.seeds[:1])
    for what, config in [('finetune', cfg.finetune)] + [
            (f'pretrain[{k!r}]', v) for k, v in cfg.pretrain.items()]:
        if not osp.isfile(resolve_config(config)):
            raise StudyError(f'{path}: {what} names {config}, which does '
                             f'not exist (a relative path is read from the '
                             f'current folder, else the repository)')
    for part in ('train', 'val', 'test'):
        if not osp.isdir(osp.join(cfg.data_root, part)):
            hint = cfg.get('data_hint', 'give --data-root an ImageNet-'
                           'layout folder with train/, val/ and test/')
            raise StudyError(f'{osp.join(cfg.data_root, part)} is missing: '
                             f'{hint}')
    if osp.isfile(osp.join(cfg.data_root, MANIFEST)) and not osp.isfile(
            osp.join(cfg.data_root, STAMP)):
        raise StudyError(f'{cfg.data_root} is an unfinished copy (its '
                         f'converter stopped before writing {STAMP}); run '
                         f'prepare_elpv.py --out {cfg.data_root} again')
    cfg.data_fingerprint = data_fingerprint(cfg.data_root)
    cfg.runs_dir = osp.join(cfg.runs_dir, f'data-{cfg.data_fingerprint}')
    names = [a.get('name') for a in cfg.arms]
    for arm in cfg.arms:
        _check_arm(cfg, arm, names, path)
        arm.update({k: arm.get(k, cfg[k]) for k in ARM_DEFAULTS},
                   label_fraction=arm.get('label_fraction', 1.0))
    return cfg


def resolve_config(path: str) -> str:
    """A config path as the worker reads it: from the current folder, else
    (relative) from the repository."""
    return path if osp.isfile(path) or osp.isabs(path) else osp.join(
        REPO, path)


def data_fingerprint(root: str) -> str:
    """12 hex digits of the SHA-1 of the files under ``train/``, ``val/``
    and ``test/`` (relative paths; the classes are folders) and the
    converter's stamp."""
    sha = hashlib.sha1()
    for part in ('train', 'val', 'test'):
        for folder, dirs, files in os.walk(osp.join(root, part)):
            dirs.sort()
            sha.update('\n'.join(osp.relpath(osp.join(folder, f), root)
                                 for f in sorted(files)).encode() + b'\n')
    if osp.isfile(osp.join(root, STAMP)):
        with open(osp.join(root, STAMP), 'rb') as f:
            sha.update(f.read())
    return sha.hexdigest()[:12]


def _check_arm(cfg: Config, arm: dict, names: List[str], path: str) -> None:
    """Raise a :class:`StudyError` for an arm the study cannot run."""
    name, unknown = arm.get('name'), set(arm) - ARM_KEYS
    pre, src = arm.get('pretrain'), arm.get('lr_from')
    bad = set(arm.get('evaluations', cfg.evaluations)) - set(EVALUATIONS)
    frac = arm.get('label_fraction', 1.0)
    checks = [
        (unknown, f'arm {name!r} has unknown keys {sorted(unknown)}; known: '
         f'{sorted(ARM_KEYS)}'),
        (name is None, 'every arm needs a name'),
        (names.count(name) > 1, f'two arms are called {name!r}'),
        (pre is not None and pre not in cfg.pretrain,
         f'arm {name!r} pre-trains with {pre!r}, which is not one of '
         f'pretrain={sorted(cfg.pretrain)}'),
        (bad, f'unknown evaluations {sorted(bad)}; choose from '
         f'{list(EVALUATIONS)}'),
        (src is not None and src not in names,
         f'arm {name!r} takes its lr from {src!r}, which is not an arm'),
        (not 0.0 < frac <= 1.0,
         f'arm {name!r}: label_fraction must be in (0, 1], got {frac}'),
    ]
    problem = next((text for failed, text in checks if failed), None)
    if problem:
        raise StudyError(f'{path}: {problem}')


def pretrain_run(cfg: Config, arm: dict, seed: int) -> Optional[Run]:
    """The arm's pre-training run (None for random init)."""
    pre = arm.get('pretrain')
    if pre is None:
        return None
    epochs, options = arm.pretrain_epochs, arm.get('pretrain_options') or {}
    return Run(kind='pretrain', name=f'pre_{pre}_e{epochs}{_slug(options)}'
               f'_s{seed}', method=pre, config=cfg.pretrain[pre], seed=seed,
               epochs=epochs, options=options, data_root=cfg.data_root)


def _start(pre: Optional[Run]) -> str:
    """What a run starts from: ``scratch`` or the pre-training's name."""
    return pre['name'][len('pre_'):].rsplit('_s', 1)[0] if pre else 'scratch'


def frozen_run(cfg: Config, arm: dict, seed: int,
               pre: Optional[Run]) -> Run:
    """kNN and linear probe on the frozen backbone of ``pre``."""
    return Run(kind='frozen', name=f'frozen_{_start(pre)}_s{seed}',
               config=cfg.finetune, seed=seed, pretrain=pre and pre.name,
               data_root=cfg.data_root)


def finetune_run(cfg: Config, arm: dict, seed: int, pre: Optional[Run],
                 lr: float) -> Run:
    """Fine-tuning from ``pre`` (None: random init) at ``lr``."""
    epochs, frac = arm.finetune_epochs, arm.label_fraction
    options = arm.get('finetune_options') or {}
    labels = '' if frac == 1.0 else f'_labels{frac:g}'
    return Run(kind='finetune', name=f'ft_{_start(pre)}{_slug(options)}'
               f'{labels}_e{epochs}_lr{lr:g}_s{seed}', config=cfg.finetune,
               seed=seed, pretrain=pre and pre.name, lr=lr, epochs=epochs,
               label_fraction=frac, options=options, data_root=cfg.data_root)


def plan_runs(cfg: Config, chosen_lr: Dict[str, float]) -> List[Run]:
    """Every run of the study, seed by seed (the first seed's table is
    complete before the second seed starts). ``chosen_lr`` maps an arm to
    its selected lr once the selection runs are done; until then the other
    seeds' fine-tuning runs are left out."""
    runs: Dict[str, Run] = {}
    for seed in dict.fromkeys(s for arm in cfg.arms for s in arm.seeds):
        for arm in (a for a in cfg.arms if seed in a.seeds):
            pre = pretrain_run(cfg, arm, seed)
            todo = [pre]
            if {'knn', 'linear'} & set(arm.evaluations):
                todo.append(frozen_run(cfg, arm, seed, pre))
            if 'finetune' in arm.evaluations:
                todo += [finetune_run(cfg, arm, seed, pre, lr)
                         for lr in lrs_to_run(cfg, arm, seed, chosen_lr)]
            runs.update((r.name, r) for r in todo
                        if r is not None and r.name not in runs)
    return list(runs.values())


def lrs_to_run(cfg: Config, arm: dict, seed: int,
               chosen_lr: Dict[str, float]) -> List[float]:
    """The fine-tuning lrs of ``arm`` at ``seed``: the grid on selection
    seeds, else the chosen lr once known (none before)."""
    if arm.get('lr_from'):
        lr = chosen_lr.get(arm['lr_from'])
        return [] if lr is None else [lr]
    grid = list(arm.lr_grid)
    if len(grid) == 1 or seed in arm.lr_select_seeds:
        return grid
    return [chosen_lr[arm['name']]] if arm['name'] in chosen_lr else []
