"""The study loop: each planned run through
:mod:`~mmumae_tools.study.worker` in its own process and work dir, an ETA
from the runs done so far, and the report after every run."""
import argparse
import ctypes
import json
import os
import os.path as osp
import platform
import signal
import subprocess
import sys
import time
from collections import defaultdict
from typing import Dict, List, Tuple

from mmengine.config import Config

from .plan import Run, StudyError, load_study, plan_runs
from .report import choose_lr, read_result, write_report


def fmt_time(seconds: float) -> str:
    """``'1h02m'`` or ``'3m05s'``."""
    h, rest = divmod(int(round(seconds)), 3600)
    return f'{h}h{rest // 60:02d}m' if h else f'{rest // 60}m{rest % 60:02d}s'


def _cost(run: Run) -> Tuple[str, float]:
    """The run's kind and config (runs with equal ones cost about the same
    per unit of work) and its units: epochs times the label fraction, or 1
    for a frozen evaluation."""
    return f'{run["kind"]}:{run["config"]}', 1.0 if run['kind'] == \
        'frozen' else float(run['epochs']) * run.get('label_fraction', 1.0)


def eta(rates: Dict[str, List[float]], runs: List[Run]) -> str:
    """The time ``runs`` will take at the seconds per unit ``rates`` learnt
    from the finished runs, as far as it is known."""
    costs = [_cost(r) for r in runs]
    known = sum(sum(rates[k]) / len(rates[k]) * units for k, units in costs
                if rates.get(k))
    unknown = sum(not rates.get(k) for k, _ in costs)
    return (fmt_time(known) if not unknown else
            f'{fmt_time(known)} + {unknown} run(s) not yet timed'
            if known else 'after the first run of each kind')


def _die_with(parent: int) -> None:
    """In a new worker: be killed when the runner ``parent`` ends, however
    it ends (Linux's parent-death signal)."""
    prctl = getattr(ctypes.CDLL(None), 'prctl', None)
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the runner ended before prctl
        os.kill(os.getpid(), signal.SIGKILL)


def start_run(cfg: Config, run: Run) -> subprocess.Popen:
    """Write the run's ``run.json`` and start its worker process (which
    dies with the runner), its output appended to ``run.log``."""
    work_dir = osp.abspath(osp.join(cfg.runs_dir, run.name))
    os.makedirs(work_dir, exist_ok=True)
    payload = dict(run, work_dir=work_dir,
                   data_fingerprint=cfg.data_fingerprint)
    if run.get('pretrain'):
        payload['pretrain_checkpoint'] = read_result(
            cfg.runs_dir, run['pretrain'])['checkpoint']
    spec = osp.join(work_dir, 'run.json')
    with open(spec, 'w') as f:
        json.dump(payload, f, indent=1)
    log = open(osp.join(work_dir, 'run.log'), 'a')
    log.write(f'\n==== {time.strftime("%Y-%m-%d %H:%M:%S")} start\n')
    log.flush()
    return subprocess.Popen(
        [sys.executable, '-m', 'mmumae_tools.study.worker', spec],
        stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=lambda parent=os.getpid(): _die_with(parent))


def plan(cfg: Config) -> Tuple[Dict[str, float], List[Run]]:
    """The lrs chosen so far and the runs they plan."""
    chosen = {arm['name']: lr for arm in cfg.arms
              if (lr := choose_lr(cfg, arm, cfg.runs_dir)) is not None}
    return chosen, plan_runs(cfg, chosen)


def report(cfg: Config, args: argparse.Namespace) -> None:
    """(Re)write results.md, results.csv and results.png, headed by the
    command and the machine."""
    chosen, runs = plan(cfg)
    command = ' '.join(['python tools/analysis_tools/run_study.py',
                        args.study] + (['--data-root', args.data_root]
                                       if args.data_root else [])
                       + (['--seeds', *map(str, args.seeds)]
                          if args.seeds else []))
    write_report(cfg, chosen, [r.name for r in runs], (
        f'Command: `{command}`. Machine: {platform.machine()}, '
        f'{os.cpu_count()} CPUs, Python {platform.python_version()}. '
        f'Seeds: {", ".join(map(str, cfg.seeds))}.'))


def run_study(args: argparse.Namespace) -> int:
    """Run (or, with ``args.dry_run`` / ``args.report_only``, list or
    report) the study ``args.study``; the exit status."""
    try:
        cfg = load_study(args.study, args.data_root, args.work_dir,
                         args.seeds)
    except StudyError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    cfg.data_root = osp.abspath(cfg.data_root)
    os.makedirs(cfg.runs_dir, exist_ok=True)
    rates, failed, t0 = defaultdict(list), set(), time.time()
    while True:
        _, runs = plan(cfg)
        done = {r.name: read_result(cfg.runs_dir, r.name) for r in runs}
        pending = [r for r in runs if r.name not in failed
                   and done[r.name] is None]
        for r in runs:
            key, units = _cost(r)
            if done[r.name] is not None and key not in rates:
                rates[key].append(done[r.name]['wall_s'] / units)
        if args.dry_run:
            for r in runs:
                print(f'{"done" if done[r.name] else "to do":6s} {r.name}')
            print(f'{len(runs) - len(pending)} of {len(runs)} planned runs '
                  'done (other seeds\' fine-tuning is planned once its lr '
                  'is chosen)')
            return 0
        if args.report_only or not pending:
            break
        run = pending[0]
        if run.get('pretrain') and done.get(run['pretrain']) is None:
            failed.add(run.name)  # its pre-training failed
            continue
        print(f'[study {time.strftime("%H:%M:%S")}] run '
              f'{len(runs) - len(pending) + 1}/{len(runs)}: {run.name} '
              f'({run["kind"]}); ETA {eta(rates, pending)}', flush=True)
        start = time.time()
        rc = start_run(cfg, run).wait()
        res = read_result(cfg.runs_dir, run.name)
        if rc != 0 or res is None:
            log = osp.join(cfg.runs_dir, run.name, 'run.log')
            with open(log) as f:
                tail = f.readlines()[-15:]
            print(f'[study] {run.name} failed (exit {rc}): ' + (
                tail[-1].rstrip() if tail and tail[-1].startswith('error: ')
                else f'last lines of {log}:\n' + ''.join(tail).rstrip()),
                file=sys.stderr, flush=True)
            failed.add(run.name)
            if not args.keep_going:
                report(cfg, args)
                return 1
            continue
        rates[_cost(run)[0]].append(res['wall_s'] / _cost(run)[1])
        print(f'[study] {run.name} done in {fmt_time(time.time() - start)}'
              ': ' + ', '.join(f'{k} {res[k]:.4g}' for k in (
                  'test_acc', 'val_acc', 'knn_test_acc', 'linear_test_acc',
                  'final_loss') if res.get(k) is not None), flush=True)
        report(cfg, args)
    report(cfg, args)
    print(f'[study] results: {osp.join(cfg.work_dir, "results.md")} '
          f'(+ results.csv, results.png); this call took '
          f'{fmt_time(time.time() - t0)}')
    return 1 if failed else 0
