"""Tables and a plot from the finished runs of a study: ``results.csv``
(one row per arm and seed), ``results.md`` (mean ± std over seeds, the lr
selection, the runs and their wall times) and ``results.png`` (fine-tuned
test accuracy against pre-training wall time, a point per arm and seed)."""
import csv
import json
import os
import os.path as osp
import statistics
from typing import Dict, List, Optional

from plan import (arm_setting, finetune_run, frozen_run, lrs_to_run,
                  pretrain_run)

COLUMNS = [
    'arm', 'seed', 'pretrain', 'pretrain_wall_s', 'lr', 'val_acc',
    'test_acc', 'test_bal_acc', 'test_f1', 'knn_test_acc',
    'knn_test_bal_acc', 'knn_test_f1', 'linear_test_acc',
    'linear_test_bal_acc', 'linear_test_f1', 'finetune_wall_s'
]
EVAL_TABLES = [
    ('Fine-tuned', 'test_acc', 'test_bal_acc', 'test_f1'),
    ('kNN on frozen features', 'knn_test_acc', 'knn_test_bal_acc',
     'knn_test_f1'),
    ('Linear probe on frozen features', 'linear_test_acc',
     'linear_test_bal_acc', 'linear_test_f1'),
]


def read_result(work_dir: str, name: str) -> Optional[dict]:
    path = osp.join(work_dir, name, 'result.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def choose_lr(cfg, arm: dict, work_dir: str) -> Optional[float]:
    """The lr of ``lr_grid`` with the best mean validation accuracy over the
    arm's selection seeds, once all of those runs are finished (ties: the
    smaller lr)."""
    if arm.get('lr_from'):
        src = [a for a in cfg.arms if a['name'] == arm['lr_from']][0]
        return choose_lr(cfg, src, work_dir)
    grid = sorted(arm_setting(cfg, arm, 'lr_grid'))
    # read from runs_dir: another call of the runner (other --seeds, same
    # runs_dir) may have done the selection runs
    select = list(arm.get('lr_select_seeds', cfg.lr_select_seeds))
    if len(grid) == 1:
        return grid[0]
    best = None
    for lr in grid:
        accs = []
        for seed in select:
            pre = pretrain_run(cfg, arm, seed)
            res = read_result(work_dir,
                              finetune_run(cfg, arm, seed, pre, lr).name)
            if res is None:
                return None
            accs.append(res['val_acc'])
        mean = sum(accs) / len(accs)
        if best is None or mean > best[0]:
            best = (mean, lr)
    return best[1]


def collect(cfg, work_dir: str, chosen: Dict[str, float]) -> List[dict]:
    rows = []
    for arm in cfg.arms:
        evals = arm.get('evaluations', cfg.evaluations)
        for seed in arm.get('seeds', cfg.seeds):
            pre = pretrain_run(cfg, arm, seed)
            row = dict(arm=arm['name'], seed=seed,
                       pretrain=pre.name if pre else 'none')
            if pre is not None:
                res = read_result(work_dir, pre.name)
                row['pretrain_wall_s'] = res and res['wall_s']
            else:
                row['pretrain_wall_s'] = 0.0
            if 'knn' in evals or 'linear' in evals:
                res = read_result(work_dir,
                                  frozen_run(cfg, arm, seed, pre).name) or {}
                for key in COLUMNS:
                    if key.startswith(('knn_', 'linear_')) and key in res:
                        row[key] = res[key]
            lr = chosen.get(arm['name'])
            if 'finetune' in evals and lr is not None \
                    and lr in lrs_to_run(cfg, arm, seed, chosen):
                res = read_result(
                    work_dir, finetune_run(cfg, arm, seed, pre, lr).name)
                if res is not None:
                    row.update(lr=lr, val_acc=res.get('val_acc'),
                               test_acc=res.get('test_acc'),
                               test_bal_acc=res.get('test_bal_acc'),
                               test_f1=res.get('test_f1'),
                               finetune_wall_s=res['wall_s'])
            rows.append(row)
    return rows


def mean_std(values: List[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return '—'
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return (f'{statistics.mean(values):.2f} ± '
            f'{statistics.stdev(values):.2f}')


def majority(data_root: str) -> Optional[float]:
    test = osp.join(data_root, 'test')
    if not osp.isdir(test):
        return None
    counts = [len(os.listdir(osp.join(test, d))) for d in sorted(
        os.listdir(test)) if osp.isdir(osp.join(test, d))]
    return 100.0 * max(counts) / sum(counts) if counts else None


def write_csv(rows: List[dict], path: str) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction='ignore')
        w.writeheader()
        for row in rows:
            w.writerow({k: ('' if row.get(k) is None else
                            (f'{row[k]:.4f}' if isinstance(row[k], float)
                             else row[k])) for k in COLUMNS})


def _groups(cfg):
    order, groups = [], {}
    for arm in cfg.arms:
        g = arm.get('group', 'main')
        if g not in groups:
            order.append(g)
            groups[g] = []
        groups[g].append(arm['name'])
    return [(g, groups[g]) for g in order]


def markdown(cfg, rows: List[dict], work_dir: str,
             chosen: Dict[str, float], run_names: List[str],
             header: str = '') -> str:
    """``work_dir`` here is the folder of the runs (``runs_dir``)."""
    by_arm = {}
    for row in rows:
        by_arm.setdefault(row['arm'], []).append(row)
    lines = [f'# Study {cfg.study_name}', '']
    if header:
        lines += [header, '']
    maj = majority(cfg.data_root)
    lines.append(f'Data: `{cfg.data_root}`; test-split majority class: '
                 + (f'{maj:.2f}%' if maj is not None else '—') + '. '
                 'Mean ± sample std over the seeds that finished (n).')
    lines.append('')
    for group, arms in _groups(cfg):
        for title, acc, bal, f1 in EVAL_TABLES:
            present = [a for a in arms if any(
                r.get(acc) is not None for r in by_arm.get(a, []))]
            if not present:
                continue
            lines += [f'## {group}: {title} (test split)', '',
                      '| arm | n | accuracy | balanced acc. | macro-F1 | '
                      'pre-training wall (min) |',
                      '|---|---|---|---|---|---|']
            for a in present:
                rs = [r for r in by_arm[a] if r.get(acc) is not None]
                wall = [r['pretrain_wall_s'] / 60 for r in rs
                        if r.get('pretrain_wall_s') is not None]
                lines.append(
                    f'| {a} | {len(rs)} | {mean_std([r[acc] for r in rs])} '
                    f'| {mean_std([r[bal] for r in rs])} '
                    f'| {mean_std([r[f1] for r in rs])} '
                    f'| {mean_std(wall)} |')
            lines.append('')
    lines += ['## Fine-tuning lr chosen on the validation split', '',
              '| arm | lr grid | val acc. per lr (selection seeds) | chosen |',
              '|---|---|---|---|']
    for arm in cfg.arms:
        if 'finetune' not in arm.get('evaluations', cfg.evaluations):
            continue
        if arm.get('lr_from'):
            c = chosen.get(arm['name'])
            lines.append(f'| {arm["name"]} | that of {arm["lr_from"]} | | '
                         f'{"—" if c is None else f"{c:g}"} |')
            continue
        cells = []
        for lr in sorted(arm_setting(cfg, arm, 'lr_grid')):
            accs = []
            for seed in arm.get('lr_select_seeds', cfg.lr_select_seeds):
                res = read_result(work_dir, finetune_run(
                    cfg, arm, seed, pretrain_run(cfg, arm, seed), lr).name)
                accs.append(f'{res["val_acc"]:.2f}' if res else '…')
            cells.append(f'{lr:g}: ' + '/'.join(accs))
        c = chosen.get(arm['name'])
        grid = ', '.join(f'{x:g}' for x in sorted(
            arm_setting(cfg, arm, 'lr_grid')))
        lines.append(f'| {arm["name"]} | {grid} | {"; ".join(cells)} | '
                     f'{"—" if c is None else f"{c:g}"} |')
    lines += ['', '## Runs', '', '| run | wall (s) | resumed |',
              '|---|---|---|']
    total = 0.0
    for name in run_names:
        res = read_result(work_dir, name)
        if res is None:
            lines.append(f'| {name} | not run yet | |')
            continue
        total += res['wall_s']
        lines.append(f'| {name} | {res["wall_s"]:.0f} | '
                     f'{"yes" if res.get("resumed") else ""} |')
    lines += ['', f'Total wall time of the finished runs: {total / 60:.1f} '
              'min (training and evaluation; process start-up excluded).',
              '']
    return '\n'.join(lines)


def plot(rows: List[dict], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    arms = []
    for row in rows:
        if row['arm'] not in arms:
            arms.append(row['arm'])
    plotted = False
    for i, arm in enumerate(arms):
        pts = [(r['pretrain_wall_s'] / 60, r['test_acc']) for r in rows
               if r['arm'] == arm and r.get('test_acc') is not None
               and r.get('pretrain_wall_s') is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts],
                       label=arm, color=f'C{i % 10}', s=30)
            plotted = True
    ax.set_xlabel('pre-training wall time (min)')
    ax.set_ylabel('fine-tuned test accuracy (%)')
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(cfg, chosen: Dict[str, float], run_names: List[str],
                 header: str = '') -> List[dict]:
    """Write results.csv, results.md and results.png to ``cfg.work_dir``
    from the runs in ``cfg.runs_dir``."""
    rows = collect(cfg, cfg.runs_dir, chosen)
    os.makedirs(cfg.work_dir, exist_ok=True)
    write_csv(rows, osp.join(cfg.work_dir, 'results.csv'))
    with open(osp.join(cfg.work_dir, 'results.md'), 'w') as f:
        f.write(markdown(cfg, rows, cfg.runs_dir, chosen, run_names, header))
    plot(rows, osp.join(cfg.work_dir, 'results.png'))
    return rows
