"""``tools/analysis_tools/benchmark_pretrain.py``: each variant of each
``--model`` preset in a fresh worker process (``--no-subprocess``: all in
this one), ``--rounds`` times round-robin with the timed steps pooled; the
command, the machine and the tables printed and in OUT_DIR/benchmark.json.
"""
import argparse
import contextlib
import json
import multiprocessing
import os
import os.path as osp
import platform
import shlex
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import List, Optional

import torch

from .step import (AMP, FP16_CPU, PRESETS, VARIANTS, CfgOptionsAction,
                   run_variant, stats)

SCRIPT = 'tools/analysis_tools/benchmark_pretrain.py'


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line."""

    def error(self, message: str):
        self.exit(2, f'{self.prog}: error: {message}\n')


def _meminfo_gib(key: str) -> float:
    with contextlib.suppress(OSError), open('/proc/meminfo') as f:
        return next((int(ln.split()[1]) / 2**20 for ln in f
                     if ln.startswith(key + ':')), 0.0)
    return 0.0


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = _Parser(prog=osp.basename(SCRIPT), description='Time one '
                'pre-training step of UM-MAE and SimMIM built from their '
                'configs (docs/benchmark.md).')
    add = p.add_argument
    add('--model', nargs='+', choices=list(PRESETS), default=['swin-t'])
    add('--variants', nargs='+', choices=VARIANTS, help='default: all')
    add('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
        help='KEY=VALUE (Python literals too), VARIANT:KEY=VALUE')
    add('--img-size', type=int, help="default: the config's crop size")
    for flag, default in (('--batch-size', 8), ('--steps', 5),
                          ('--warmup', 2), ('--rounds', 1),
                          ('--max-batch-step', 1)):
        add(flag, type=int, default=default)
    add('--device', choices=['cpu', 'cuda'], default='cpu')
    add('--amp', choices=list(AMP), default='none')
    add('--threads', type=int, help='per variant (default: 1 on a CPU)')
    add('--compile-backend', default='inductor')
    add('--compile-scope', choices=['parts', 'blocks'], default='parts')
    add('--max-batch-limit', type=int, help='default: 64 on a CPU, 16384')
    add('--max-batch-rss-gib', type=float,
        help='CPU: most peak RSS (default: half the free memory)')
    for flag in ('--compile', '--max-batch', '--profile', '--no-flops',
                 '--no-subprocess'):
        add(flag, action='store_true')
    add('--out-dir', default='work_dirs/benchmark_pretrain')
    args = p.parse_args(argv)
    if min(args.steps, args.batch_size, args.rounds,
           args.max_batch_step) < 1 or args.warmup < 0:
        p.error('--steps, --batch-size, --rounds and --max-batch-step must '
                'be >= 1, --warmup >= 0')
    if args.compile and args.warmup < 1:
        p.error('--compile needs --warmup >= 1: the first step compiles')
    if args.amp == 'fp16' and args.device == 'cpu':
        p.error(FP16_CPU)
    bad = {k.rpartition(':')[0] for k in args.cfg_options} - {'', *VARIANTS}
    if bad:
        p.error(f'--cfg-options: no variant {", ".join(sorted(bad))}')
    cpu = args.device == 'cpu'
    args.threads = args.threads or (1 if cpu else None)
    args.max_batch_limit = args.max_batch_limit or (64 if cpu else 16384)
    if args.max_batch_rss_gib is None:
        args.max_batch_rss_gib = _meminfo_gib('MemAvailable') / 2 or 4.0
    return args


def machine(args: argparse.Namespace) -> str:
    """The machine in words: GPU, CPU model, cores, memory; versions."""
    import mmengine
    import mmpretrain
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
        cpu = next((ln.split(':', 1)[1].strip() for ln in f
                    if ln.startswith('model name')), cpu)
    text = (f'{cpu}, {os.cpu_count()} cores, '
            f'{_meminfo_gib("MemTotal"):.1f} GiB')
    if args.device == 'cuda' and torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0)
        text = (f'{gpu.name} ({gpu.total_memory / 2**30:.0f} GiB, CUDA '
                f'{torch.version.cuda}); {text}')
    return (f'{text}; {args.threads or torch.get_num_threads()} torch '
            f'thread(s) per variant; Python {platform.python_version()}, '
            f'torch {torch.__version__}, mmengine {mmengine.__version__}, '
            f'mmpretrain {mmpretrain.__version__}')


def _in_worker(preset: str, variant: str, args: argparse.Namespace) -> dict:
    """:func:`run_variant` in a fresh process."""
    ctx = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        try:
            return pool.submit(run_variant, preset, variant, args).result()
        except BrokenProcessPool:
            return dict(model=preset, variant=variant, amp=args.amp,
                        compile=args.compile, status='failed',
                        reason='the worker process died (out of memory?)')


def merge(runs: List[dict]) -> dict:
    """One result of a variant's rounds: the timed steps pooled, the
    largest peak memory; the first failure if one failed."""
    if any(r['status'] != 'ok' for r in runs):
        return next(r for r in runs if r['status'] != 'ok')
    out = dict(runs[-1], rounds=len(runs))
    for key in ('step_times_s', 'step_cpu_times_s'):
        out[key] = [t for r in runs for t in r[key]]
    for key in ('peak_mem_bytes', 'peak_above_base_bytes'):
        if all(r.get(key) for r in runs):
            out[key] = max(r[key] for r in runs)
    return dict(out, **stats(out['step_times_s'], out['step_cpu_times_s'],
                             out['batch_size']))


def run_all(args: argparse.Namespace) -> List[dict]:
    """Every variant asked for, ``args.rounds`` times round-robin."""
    todo = [(m, v) for m in args.model for v in VARIANTS
            if v in (args.variants or PRESETS[m])]
    runs: dict = {key: [] for key in todo}
    run = run_variant if args.no_subprocess else _in_worker
    for k in range(args.rounds):
        for m, v in todo:
            r = run(m, v, args) if v in PRESETS[m] else dict(
                model=m, variant=v, status='skipped',
                reason=f'{m} has no {v} variant')
            runs[m, v].append(r)
            print(f'[round {k + 1}/{args.rounds}] {m}/{v}: ' + (
                f'median {r["median_s"]:.3f} s' if r['status'] == 'ok'
                else f'{r["status"].upper()}: {r["reason"]}'), flush=True)
    return [merge(r) for r in runs.values()]


def _div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def ratios(results: List[dict]) -> List[dict]:
    """Per preset, amp and compile: each variant over every later one, of
    median step time, CPU time, peak memory, FLOPs and largest batch."""
    ok = [r for r in results if r['status'] == 'ok']
    return [dict(model=a['model'], amp=a['amp'], compile=a['compile'],
                 ratio=f'{a["variant"]}/{b["variant"]}',
                 **{k: _div(a.get(k), b.get(k)) for k in (
                     'median_s', 'median_cpu_s', 'peak_mem_bytes',
                     'peak_above_base_bytes', 'flops_per_image',
                     'max_batch')})
            for i, a in enumerate(ok) for b in ok[i + 1:]
            if [a[k] for k in ('model', 'amp', 'compile')] ==
            [b[k] for k in ('model', 'amp', 'compile')]]


_GIB = 2.0**30
#: (header, result key, format, scale) of the columns of the two tables
RESULT_COLUMNS = (
    ('model', 'model'), ('variant', 'variant'), ('amp', 'amp'),
    ('compile', 'compile'), ('img', 'img_size'), ('batch', 'batch_size'),
    ('min s', 'min_s', '.3f'), ('median s', 'median_s', '.3f'),
    ('img/s', 'images_per_s', '.2f'), ('CPU s', 'median_cpu_s', '.2f'),
    ('peak GiB', 'peak_mem_bytes', '.2f', _GIB),
    ('above base GiB', 'peak_above_base_bytes', '.2f', _GIB),
    ('GFLOPs/img', 'flops_per_image', '.2f', 1e9),
    ('params M', 'params', '.1f', 1e6), ('largest batch', 'max_batch'),
    ('first step s', 'first_step_s', '.2f'), ('graph breaks', 'graph_breaks'))
RATIO_COLUMNS = RESULT_COLUMNS[:1] + RESULT_COLUMNS[2:4] + (
    ('ratio', 'ratio'), ('time', 'median_s', '.3f'),
    ('CPU time', 'median_cpu_s', '.3f'), ('memory', 'peak_mem_bytes', '.2f'),
    ('above base', 'peak_above_base_bytes', '.2f'),
    ('FLOPs', 'flops_per_image', '.3f'), ('largest batch', 'max_batch', '.2f'))


def _cell(r: dict, key: str, spec: str = '', scale: float = 1) -> str:
    value = r.get(key)
    if value is None or isinstance(value, bool):
        return {None: '-', True: 'yes', False: 'no'}[value]
    capped = key == 'max_batch' and r.get('max_batch_capped', False)
    return format(value / scale if scale != 1 else value, spec) + \
        ' (limit)' * capped


def _markdown(rows: List[dict], columns: tuple) -> List[str]:
    lines = ['| ' + ' | '.join(c[0] for c in columns) + ' |',
             '|' + '---|' * len(columns)]
    for r in rows:
        cells = [_cell(r, *c[1:]) for c in columns]
        if r.get('status', 'ok') != 'ok':
            cells = cells[:4] + [f'{r["status"].upper()}: {r["reason"]}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def report(results: List[dict]) -> str:
    """The results, their ratios and the profiles as markdown tables."""
    lines = _markdown(results, RESULT_COLUMNS) + [''] + _markdown(
        ratios(results), RATIO_COLUMNS)
    for r in (r for r in results if r.get('profile')):
        lines += ['', f'Profile of one {r["model"]}/{r["variant"]} step '
                  f'({r["amp"]}{", compiled" * r["compile"]}), top '
                  'operators by self time:', '',
                  '| operator | calls | self ms |', '|---|---|---|']
        lines += [f'| `{n[:60]}` | {c} | {ms:.1f} |'
                  for n, c, ms in r['profile']]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the benchmark; the command, machine, results and table."""
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    command = shlex.join(['python', SCRIPT] + list(
        sys.argv[1:] if argv is None else argv))
    head = f'command: {command}\nmachine: {machine(args)}'
    print(head, flush=True)
    results = run_all(args)
    out = dict(command=command, machine=head.split('machine: ')[1],
               args=vars(args), results=results, ratios=ratios(results),
               table=report(results))
    print(f'\n{head}\n\n{out["table"]}', flush=True)
    with open(osp.join(args.out_dir, 'benchmark.json'), 'w') as f:
        json.dump(out, f, indent=1)
    return out
