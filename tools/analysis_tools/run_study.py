"""Run a study: a grid of pre-train -> evaluate experiments, each through
mmengine's Runner in its own process and work dir, then tables and a plot.

Usage::

    python tools/analysis_tools/run_study.py STUDY_CONFIG
        [--data-root DIR] [--work-dir DIR] [--seeds 0 1 2]
        [--dry-run] [--report-only] [--keep-going]

``STUDY_CONFIG`` is a file such as ``configs/studies/elpv/
study_main_swin-mini.py`` (its keys: ``tools/analysis_tools/study/plan.py``).
Any ImageNet-layout folder with ``train/``, ``val/`` and ``test/`` of class
sub-folders can replace the study's data: ``--data-root DIR``.

The study is resumable: a run whose folder holds ``result.json`` is not
repeated, and a run that was killed continues from its newest checkpoint.
Each fine-tuning lr is chosen on the validation split (the study's
selection seeds) before the other seeds run. When every run is done, or
after each run, ``results.md``, ``results.csv`` and ``results.png`` are
(re)written in the study's work dir. Progress and an ETA from the runs
finished so far go to the terminal; each run's log is ``<run>/run.log``.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time
from collections import defaultdict

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(HERE, 'study'))

from plan import StudyError, load_study, plan_runs  # noqa: E402
from report import choose_lr, read_result, write_report  # noqa: E402

WORKER = osp.join(HERE, 'study', 'worker.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Run a pre-train -> evaluate study (resumable) and '
        'write results.md / results.csv / results.png.')
    p.add_argument('study', help='study config, e.g. configs/studies/elpv/'
                   'study_main_swin-mini.py')
    p.add_argument('--data-root', help='ImageNet-layout folder with train/, '
                   'val/ and test/ (default: the study\'s data_root)')
    p.add_argument('--work-dir', help='results folder (default: the '
                   'study\'s work_dir); runs go to <work-dir>/runs unless '
                   'the study names runs_dir')
    p.add_argument('--seeds', type=int, nargs='+',
                   help='override the study\'s seeds')
    p.add_argument('--dry-run', action='store_true',
                   help='list the runs and whether they are done')
    p.add_argument('--report-only', action='store_true',
                   help='write the tables from the finished runs only')
    p.add_argument('--keep-going', action='store_true',
                   help='go on with the other runs when one fails')
    return p.parse_args(argv)


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


def cost_key(run: dict) -> str:
    """Runs that cost about the same per epoch share a key."""
    if run['kind'] == 'pretrain':
        return f'pretrain:{run["config"]}'
    if run['kind'] == 'finetune':
        return f'finetune:{run["config"]}'
    return f'frozen:{run["config"]}'


def run_units(run: dict) -> float:
    if run['kind'] == 'pretrain':
        return float(run['epochs'])
    if run['kind'] == 'finetune':
        return float(run['epochs']) * run.get('label_fraction', 1.0)
    return 1.0


class Eta:
    """Seconds per unit of work (an epoch, a label-fraction-weighted
    fine-tuning epoch, a frozen evaluation), from the finished runs."""

    def __init__(self):
        self.per_unit = defaultdict(list)

    def add(self, run: dict, seconds: float) -> None:
        self.per_unit[cost_key(run)].append(seconds / run_units(run))

    def estimate(self, runs) -> tuple:
        known, unknown = 0.0, 0
        for run in runs:
            rates = self.per_unit.get(cost_key(run))
            if rates:
                known += sum(rates) / len(rates) * run_units(run)
            else:
                unknown += 1
        return known, unknown


def start_run(cfg, run: dict) -> subprocess.Popen:
    work_dir = osp.join(cfg.runs_dir, run['name'])
    os.makedirs(work_dir, exist_ok=True)
    payload = dict(run, work_dir=osp.abspath(work_dir))
    if run.get('pretrain'):
        pre = read_result(cfg.runs_dir, run['pretrain'])
        payload['pretrain_checkpoint'] = pre['checkpoint']
    spec = osp.join(work_dir, 'run.json')
    with open(spec, 'w') as f:
        json.dump(payload, f, indent=1)
    log = open(osp.join(work_dir, 'run.log'), 'a')
    log.write(f'\n==== {time.strftime("%Y-%m-%d %H:%M:%S")} start\n')
    log.flush()
    return subprocess.Popen([sys.executable, WORKER, spec], stdout=log,
                            stderr=subprocess.STDOUT)


def log_tail(cfg, run: dict, lines: int = 15) -> str:
    path = osp.join(cfg.runs_dir, run['name'], 'run.log')
    try:
        with open(path) as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


def summary_line(res: dict) -> str:
    keys = [('test_acc', 'test acc'), ('val_acc', 'val acc'),
            ('knn_test_acc', 'kNN test acc'),
            ('linear_test_acc', 'linear test acc'),
            ('final_loss', 'loss')]
    return ', '.join(f'{label} {res[k]:.4g}' for k, label in keys
                     if res.get(k) is not None)


def choices(cfg) -> dict:
    chosen = {}
    for arm in cfg.arms:
        lr = choose_lr(cfg, arm, cfg.runs_dir)
        if lr is not None:
            chosen[arm['name']] = lr
    return chosen


def header(cfg, args) -> str:
    return (f'Command: `python tools/analysis_tools/run_study.py '
            f'{args.study}' + (f' --data-root {args.data_root}'
                               if args.data_root else '')
            + (f' --seeds {" ".join(map(str, args.seeds))}'
               if args.seeds else '') + '`. '
            f'Machine: {platform.machine()}, {os.cpu_count()} CPUs, '
            f'Python {platform.python_version()}. Seeds: '
            f'{", ".join(map(str, cfg.seeds))}.')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_study(args.study, args.data_root, args.work_dir,
                         args.seeds)
    except StudyError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    cfg.data_root = osp.abspath(cfg.data_root)
    os.makedirs(cfg.runs_dir, exist_ok=True)
    eta, failed, t0 = Eta(), set(), time.time()
    while True:
        chosen = choices(cfg)
        runs = plan_runs(cfg, chosen)
        pending = [r for r in runs if r.name not in failed
                   and read_result(cfg.runs_dir, r.name) is None]
        for r in runs:
            res = read_result(cfg.runs_dir, r.name)
            if res is not None and cost_key(r) not in eta.per_unit:
                eta.add(r, res['wall_s'])
        if args.dry_run:
            for r in runs:
                state = 'done' if read_result(cfg.runs_dir, r.name) \
                    else 'to do'
                print(f'{state:6s} {r.name}')
            print(f'{len(runs) - len(pending)} of {len(runs)} planned runs '
                  'done (other seeds\' fine-tuning is planned once its lr '
                  'is chosen)')
            return 0
        if args.report_only or not pending:
            break
        run = pending[0]
        if run.get('pretrain') and read_result(cfg.runs_dir,
                                               run['pretrain']) is None:
            failed.add(run.name)  # its pre-training failed
            continue
        done = len(runs) - len(pending)
        known, unknown = eta.estimate(pending)
        if not unknown:
            eta_text = fmt_time(known)
        elif known:
            eta_text = f'{fmt_time(known)} + {unknown} run(s) not yet timed'
        else:
            eta_text = 'after the first run of each kind'
        print(f'[study {time.strftime("%H:%M:%S")}] run {done + 1}/'
              f'{len(runs)}: {run.name} ({run["kind"]}); ETA {eta_text}',
              flush=True)
        start = time.time()
        proc = start_run(cfg, run)
        rc = proc.wait()
        res = read_result(cfg.runs_dir, run.name)
        if rc != 0 or res is None:
            print(f'[study] {run.name} failed (exit {rc}); last lines of '
                  f'{osp.join(cfg.runs_dir, run.name, "run.log")}:\n'
                  f'{log_tail(cfg, run)}', file=sys.stderr, flush=True)
            if not args.keep_going:
                write_report(cfg, chosen, [r.name for r in runs],
                             header(cfg, args))
                return 1
            failed.add(run.name)
            continue
        eta.add(run, res['wall_s'])
        print(f'[study] {run.name} done in {fmt_time(time.time() - start)}'
              f': {summary_line(res)}', flush=True)
        write_report(cfg, choices(cfg), [r.name for r in runs],
                     header(cfg, args))
    chosen = choices(cfg)
    runs = plan_runs(cfg, chosen)
    write_report(cfg, chosen, [r.name for r in runs], header(cfg, args))
    print(f'[study] results: {osp.join(cfg.work_dir, "results.md")} '
          f'(+ results.csv, results.png); this call took '
          f'{fmt_time(time.time() - t0)}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
