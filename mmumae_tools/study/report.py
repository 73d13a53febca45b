"""Tables and a plot from the finished runs of a study: ``results.csv``
(one row per arm and seed), ``results.md`` (mean ± std over seeds, the lr
selection, the runs and their CPU and wall times) and ``results.png``
(fine-tuned test accuracy against pre-training CPU time, a point per arm and
seed)."""
import csv
import json
import math
import os
import os.path as osp
import statistics
import sys
from typing import Dict, List, Optional

from mmengine.config import Config

from .plan import finetune_run, frozen_run, lrs_to_run, pretrain_run

EVAL_TABLES = [('Fine-tuned', ''), ('kNN on frozen features', 'knn_'),
               ('Linear probe on frozen features', 'linear_')]
COLUMNS = ['arm', 'seed', 'pretrain', 'pretrain_wall_s', 'pretrain_cpu_s',
           'lr', 'val_acc'] + [
    f'{prefix}test_{k}' for _, prefix in EVAL_TABLES
    for k in ('acc', 'bal_acc', 'f1')] + ['finetune_wall_s', 'collapsed']


_CORRUPT = set()  # result files already reported


def read_result(runs_dir: str, name: str) -> Optional[dict]:
    """The ``result.json`` of a finished run, else None; a corrupt one is
    reported (once) and counts as not done, so the run is done again."""
    path = osp.join(runs_dir, name, 'result.json')
    try:
        with open(path) as f:
            res = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # cut short, or not JSON
        res = err
    if isinstance(res, dict) and 'wall_s' in res:
        return res
    if path not in _CORRUPT:
        _CORRUPT.add(path)
        print(f'[study] {path} is corrupt ({str(res)[:80]}); the run counts '
              f'as not done and is run again', file=sys.stderr)
    return None


def selection_accs(cfg: Config, arm: dict,
                   runs_dir: str) -> Dict[float, List[Optional[float]]]:
    """lr -> validation accuracy on each of the arm's selection seeds (None
    for a run not finished), smallest lr first; from ``runs_dir``, where
    another call (other ``--seeds``) may have done the selection runs."""
    return {lr: [_val_acc(read_result(runs_dir, finetune_run(
        cfg, arm, s, pretrain_run(cfg, arm, s), lr).name))
        for s in arm.lr_select_seeds] for lr in sorted(arm.lr_grid)}


def _val_acc(res: Optional[dict]) -> Optional[float]:
    """A run's validation accuracy; -inf when it collapsed to one class
    (never chosen while another lr does not)."""
    if not res:
        return None
    return -math.inf if res.get('val_collapsed') else res.get('val_acc')


def choose_lr(cfg: Config, arm: dict, runs_dir: str) -> Optional[float]:
    """The lr of ``lr_grid`` with the best mean validation accuracy over the
    arm's selection seeds (a tie keeps the first, smaller, lr), once all of
    those runs are finished."""
    if arm.get('lr_from'):
        src = next(a for a in cfg.arms if a['name'] == arm['lr_from'])
        return choose_lr(cfg, src, runs_dir)
    if len(arm.lr_grid) == 1:
        return arm.lr_grid[0]
    accs = selection_accs(cfg, arm, runs_dir)
    if any(None in values for values in accs.values()):
        return None
    return max(accs, key=lambda lr: statistics.mean(accs[lr]))


def collect(cfg: Config, runs_dir: str,
            chosen: Dict[str, float]) -> List[dict]:
    """One row (:data:`COLUMNS`) per arm and seed."""
    rows = []
    for arm in cfg.arms:
        for seed in arm.seeds:
            pre = pretrain_run(cfg, arm, seed)
            res = pre and read_result(runs_dir, pre.name)
            row = dict(arm=arm['name'], seed=seed, pretrain=pre.name if pre
                       else 'none', pretrain_wall_s=res['wall_s'] if res
                       else None if pre else 0.0,
                       pretrain_cpu_s=res.get('cpu_s') if res
                       else None if pre else 0.0)
            if {'knn', 'linear'} & set(arm.evaluations):
                res = read_result(runs_dir,
                                  frozen_run(cfg, arm, seed, pre).name) or {}
                row.update((k, res[k]) for k in COLUMNS
                           if k.startswith(('knn_', 'linear_')) and k in res)
            lr = chosen.get(arm['name'])
            res = read_result(runs_dir, finetune_run(
                cfg, arm, seed, pre, lr).name) if 'finetune' in \
                arm.evaluations and lr in lrs_to_run(cfg, arm, seed,
                                                     chosen) else None
            if res is not None and res.get('test_collapsed'):
                row.update(lr=lr, collapsed=True)  # a failure, not a score
            elif res is not None:
                row.update({k: res.get(k) for k in (
                    'val_acc', 'test_acc', 'test_bal_acc', 'test_f1')},
                    lr=lr, finetune_wall_s=res['wall_s'])
            rows.append(row)
    return rows


def mean_std(values: List[Optional[float]]) -> str:
    """``'m ± s'`` of the values that are not None (``'—'`` for none)."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return f'{values[0]:.2f}' if values else '—'
    return (f'{statistics.mean(values):.2f} ± '
            f'{statistics.stdev(values):.2f}')


def majority(data_root: str) -> Optional[float]:
    """Accuracy (%) of always answering the test split's largest class."""
    test = osp.join(data_root, 'test')
    counts = [len(os.listdir(osp.join(test, d))) for d in os.listdir(test)
              if osp.isdir(osp.join(test, d))] if osp.isdir(test) else []
    return 100.0 * max(counts) / sum(counts) if sum(counts) else None


def _eval_tables(cfg: Config, rows: List[dict]) -> List[str]:
    """Per arm group and evaluation: n, accuracy, balanced accuracy,
    macro-F1 and pre-training minutes, mean ± std over seeds."""
    groups: Dict[str, List[str]] = {}
    for arm in cfg.arms:
        groups.setdefault(arm.get('group', 'main'), []).append(arm['name'])
    lines = []
    for (group, arms), (title, prefix) in ((g, t) for g in groups.items()
                                           for t in EVAL_TABLES):
        keys = [f'{prefix}test_{k}' for k in ('acc', 'bal_acc', 'f1')]
        done = {a: [r for r in rows if r['arm'] == a
                    and r.get(keys[0]) is not None] for a in arms}
        if not any(done.values()):
            continue
        lines += [f'## {group}: {title} (test split)', '',
                  '| arm | n | accuracy | balanced acc. | macro-F1 | '
                  'pre-training CPU (min) | pre-training wall (min) |',
                  '|---|---|---|---|---|---|---|']
        lines += [f'| {a} | {len(rs)} | ' + ' | '.join(
            [mean_std([r[k] for r in rs]) for k in keys] + [mean_std(
                [r[t] and r[t] / 60 for r in rs]) for t in (
                    'pretrain_cpu_s', 'pretrain_wall_s')]) + ' |'
                  for a, rs in done.items() if rs]
        lines.append('')
    return lines


def markdown(cfg: Config, rows: List[dict], chosen: Dict[str, float],
             run_names: List[str], header: str = '') -> str:
    """``results.md``: the evaluation tables, the lr selection and the
    runs with their wall times."""
    maj = majority(cfg.data_root)
    lines = [f'# Study {cfg.study_name}', ''] + ([header, ''] if header
                                                 else [])
    lines += [f'Data: `{cfg.data_root}` (fingerprint '
              f'{cfg.data_fingerprint}: every run below was made on it); '
              'test-split majority class: ' + (
                  f'{maj:.2f}%' if maj is not None else '—') + '. '
              'Mean ± sample std over the seeds that finished (n).', '']
    lines += _eval_tables(cfg, rows)
    failed = [r for r in rows if r.get('collapsed')]
    if failed:
        lines += ['## Failed: fine-tuning collapsed to one class (not in the '
                  'tables)', '', '| arm | seed | pre-training | lr |',
                  '|---|---|---|---|'] + [
            f'| {r["arm"]} | {r["seed"]} | {r["pretrain"]} | {r["lr"]:g} |'
            for r in failed] + ['']
    lines += ['## Fine-tuning lr chosen on the validation split', '',
              '| arm | lr grid | val acc. per lr (selection seeds) | chosen |',
              '|---|---|---|---|']
    for arm in (a for a in cfg.arms if 'finetune' in a.evaluations):
        name, src, lr = arm['name'], arm.get('lr_from'), chosen.get(
            arm['name'])
        lr = '—' if lr is None else f'{lr:g}'
        if src:
            lines.append(f'| {name} | that of {src} | | {lr} |')
            continue
        accs = selection_accs(cfg, arm, cfg.runs_dir)
        cells = '; '.join(f'{x:g}: ' + '/'.join(
            '…' if a is None else 'collapsed' if a == -math.inf
            else f'{a:.2f}' for a in values)
            for x, values in accs.items())
        lines.append(f'| {name} | {", ".join(f"{x:g}" for x in accs)} | '
                     f'{cells} | {lr} |')
    lines += ['', '## Runs', '', '| run | CPU (s) | wall (s) | resumed |',
              '|---|---|---|---|']
    results = [read_result(cfg.runs_dir, name) for name in run_names]
    lines += [f'| {name} | not run yet | | |' if res is None else
              f'| {name} | {res.get("cpu_s", float("nan")):.0f} | '
              f'{res["wall_s"]:.0f} | {"yes" if res.get("resumed") else ""} |'
              for name, res in zip(run_names, results)]
    total = sum(res['wall_s'] for res in results if res)
    return '\n'.join(lines + [
        '', f'Total wall time of the finished runs: {total / 60:.1f} min '
        '(training and evaluation; process start-up excluded).', ''])


def plot(rows: List[dict], path: str) -> None:
    """Fine-tuned test accuracy against pre-training minutes, a colour per
    arm (matplotlib without pyplot: no display needed)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for i, arm in enumerate(dict.fromkeys(row['arm'] for row in rows)):
        pts = [(r['pretrain_cpu_s'] / 60, r['test_acc']) for r in rows
               if r['arm'] == arm and r.get('test_acc') is not None
               and r.get('pretrain_cpu_s') is not None]
        if pts:
            ax.scatter(*zip(*pts), label=arm, color=f'C{i % 10}', s=30)
    ax.set(xlabel='pre-training CPU time (min)',
           ylabel='fine-tuned test accuracy (%)')
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def write_report(cfg: Config, chosen: Dict[str, float],
                 run_names: List[str], header: str = '') -> List[dict]:
    """Write results.csv, results.md and results.png to ``cfg.work_dir``
    from the runs in ``cfg.runs_dir``; returns the rows."""
    rows = collect(cfg, cfg.runs_dir, chosen)
    os.makedirs(cfg.work_dir, exist_ok=True)
    with open(osp.join(cfg.work_dir, 'results.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction='ignore')
        w.writeheader()
        w.writerows({k: '' if row.get(k) is None else
                     f'{row[k]:.4f}' if isinstance(row[k], float) else row[k]
                     for k in COLUMNS} for row in rows)
    with open(osp.join(cfg.work_dir, 'results.md'), 'w') as f:
        f.write(markdown(cfg, rows, chosen, run_names, header))
    plot(rows, osp.join(cfg.work_dir, 'results.png'))
    return rows
