"""The GPU check of ``tools/analysis_tools/gpu_check.sh``: runs and table.

Runs ``benchmark_pretrain.py`` in phases, most important first, each in one
process (``--no-subprocess``; on CUDA the peak memory is reset per
variant), within one time budget: Swin-T and PVT-S at 256 px, UM-MAE against
the reference-geometry SimMIM configs (Swin window 16, PVT sr 8-4-2-1;
``configs/simmim/README.md``), bf16 and fp16, eager and ``torch.compile``:

1. ``eager-bf16``: timing, ``torch.profiler`` tables, largest batch;
2. ``compile-bf16``: timing with ``torch.compile``;
3. ``eager-fp16``: timing, largest batch;
4. ``compile-fp16``: timing with ``torch.compile``;
5. ``compile-bf16-maxbatch``, 6. ``compile-fp16-maxbatch``: largest batch
   with the compiled step.

``torch.compile`` is regional by default (``--compile-scope blocks``: the
repeated blocks one by one, identical blocks sharing compiled code), which
compiles in a fraction of the time of whole backbones; ``--compile-scope
parts`` compiles the backbone and the neck whole.

A phase that would start after the budget is skipped, and so is a variant
or a ``--max-batch`` trial inside one (the tool's ``--time-budget``); every
finished variant is kept (``results.jsonl``). Then :func:`write_outputs`
writes into one folder: ``gpu_check.md`` (tables and the issue's targets),
``results.json`` (every result), ``profiles.txt`` (the profiler tables) and
``raw.tar.gz`` (each phase's output); the shell script adds
``gpu_check.log``.

Usage (what gpu_check.sh runs)::

    python tools/analysis_tools/pretrain_bench/gpu_check.py --out-dir OUT \\
        [--device cuda] [--quick] [--budget 450] [--phases NAME ...]
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = osp.dirname(osp.abspath(__file__))
TOOL = osp.join(osp.dirname(HERE), 'benchmark_pretrain.py')

#: ImageNet-1k training images, epochs, the paper's Swin-T UM-MAE hours on 8
#: GPUs: the per-GPU rate the paper implies
IMAGENET_TRAIN, EPOCHS, PAPER_HOURS, PAPER_GPUS = 1281167, 200, 25.0, 8
PAPER_RATE = IMAGENET_TRAIN * EPOCHS / (PAPER_HOURS * 3600) / PAPER_GPUS
#: the issue's targets (one GPU, same run)
TIME_RATIO_MAX = {'swin-t': 0.45, 'pvt-s': 0.50}
MEMORY_RATIO_MAX = 0.40
RATE_FACTOR = 2.0

MODELS = ('swin-t', 'pvt-s')
VARIANTS = ('ummae', 'simmim')
#: tiny archs for --quick (a CPU rehearsal); the same as tests/test_benchmark
QUICK_OPTIONS = [
    "model.backbone.arch={'embed_dims': 32, 'depths': [1, 1, 1, 1], "
    "'num_heads': [1, 2, 4, 8]}",
    'ummae:model.neck.embed_dims=32', 'ummae:model.neck.depth=1',
    'ummae:model.neck.num_heads=2',
]
QUICK_SWIN = ['model.neck.in_channels=256']
QUICK_PVT = [
    "model.backbone.arch={'embed_dims': [16, 32, 64, 128], 'depths': "
    "[1, 1, 1, 1], 'num_heads': [1, 1, 2, 4], 'mlp_ratios': [2, 2, 2, 2]}",
    'model.neck.in_channels=128'
]
PHASES = ('eager-bf16', 'compile-bf16', 'eager-fp16', 'compile-fp16',
          'compile-bf16-maxbatch', 'compile-fp16-maxbatch')


def phase_args(name: str, device: str, quick: bool, batch: int,
               max_batch_step: int, compile_backend: str,
               compile_scope: str = 'blocks') -> List[List[str]]:
    """``benchmark_pretrain.py`` argument lists of one phase (one per
    model in --quick, whose tiny archs differ per model; else one)."""
    kind, amp = name.split('-')[:2]
    maxbatch = name.endswith('maxbatch') or kind == 'eager'
    args = ['--device', device, '--amp', amp, '--variants', *VARIANTS,
            '--no-subprocess']
    if quick:
        args += ['--img-size', '64', '--batch-size', '2', '--steps', '2',
                 '--warmup', '1', '--threads', '1']
        if maxbatch:
            args += ['--max-batch', '--max-batch-limit', '8']
    else:
        args += ['--batch-size', str(batch), '--steps', '10', '--warmup',
                 '3']
        if maxbatch:
            args += ['--max-batch', '--max-batch-step', str(max_batch_step),
                     '--max-batch-limit', '16384']
    if name.endswith('maxbatch'):  # only the search: no timing to speak of
        i = args.index('--steps')
        args[i + 1:i + 2] = ['1']
        i = args.index('--warmup')
        args[i + 1:i + 2] = ['1']
        args.append('--no-flops')
    if kind == 'compile':
        args += ['--compile', '--compile-backend', compile_backend,
                 '--compile-scope', compile_scope]
    if name == 'eager-bf16':
        args.append('--profile')
    if not quick:
        return [['--model', *MODELS, *args]]
    return [['--model', 'swin-t', *args, '--cfg-options', *QUICK_OPTIONS,
             *QUICK_SWIN],
            ['--model', 'pvt-s', *args, '--cfg-options', *QUICK_OPTIONS,
             *QUICK_PVT]]


def run_phases(raw_dir: str, phases: List[str], device: str, quick: bool,
               budget: float, batch: int, max_batch_step: int,
               compile_backend: str, compile_scope: str = 'blocks',
               reserve: float = 20.0) -> List[dict]:
    """Run the phases in order within ``budget`` seconds; what happened."""
    start = time.time()
    done = []
    for name in phases:
        for k, argv in enumerate(phase_args(name, device, quick, batch,
                                            max_batch_step, compile_backend,
                                            compile_scope)):
            out = osp.join(raw_dir, f'{name}.{k}')
            left = budget - reserve - (time.time() - start)
            entry = dict(phase=name, out_dir=out, argv=argv)
            done.append(entry)
            if device != 'cuda' and '-fp16' in name:
                entry.update(status='skipped', reason='fp16 needs CUDA '
                             '(mmengine has no fp16 on a CPU)')
                print(f'== {name}: SKIPPED ({entry["reason"]})', flush=True)
                continue
            if left < 10:
                entry.update(status='skipped',
                             reason=f'time budget of {budget:.0f} s spent')
                print(f'== {name}: SKIPPED ({entry["reason"]})', flush=True)
                continue
            cmd = [sys.executable, TOOL, *argv, '--out-dir', out,
                   '--time-budget', f'{left:.0f}']
            print(f'== {name}: {" ".join(cmd)}', flush=True)
            t0 = time.time()
            try:
                proc = subprocess.run(cmd, timeout=left + reserve / 2)
                entry['returncode'] = proc.returncode
                entry['status'] = 'ok' if proc.returncode == 0 else 'failed'
            except subprocess.TimeoutExpired:
                entry.update(status='killed',
                             reason='ran past the time budget')
            entry['wall_s'] = round(time.time() - t0, 1)
            print(f'== {name}: {entry["status"]} in {entry["wall_s"]} s',
                  flush=True)
    return done


def load_results(raw_dir: str) -> List[dict]:
    """Every result line of every phase, tagged with its phase."""
    out = []
    if not osp.isdir(raw_dir):
        return out
    for phase in sorted(os.listdir(raw_dir)):
        path = osp.join(raw_dir, phase, 'results.jsonl')
        if not osp.exists(path):
            continue
        with open(path) as f:
            for line in f:
                if line.strip():
                    out.append(dict(json.loads(line),
                                    phase=phase.split('.')[0]))
    return out


def rows(results: List[dict]) -> Dict[Tuple[str, str, str, bool], dict]:
    """One row per (model, variant, amp, compiled): timing from the timing
    phases, the largest batch from whichever phase searched it."""
    table: Dict[Tuple[str, str, str, bool], dict] = {}
    for r in results:
        key = (r.get('model'), r.get('variant'), r.get('amp'),
               bool(r.get('compile')))
        row = table.setdefault(key, dict(model=key[0], variant=key[1],
                                         amp=key[2], compile=key[3]))
        timing = not r['phase'].endswith('maxbatch')
        if r.get('status') != 'ok':
            row.setdefault('problems', []).append(
                f'{r["phase"]}: {r.get("status")}: {r.get("reason")}')
            continue
        if timing:
            row.update(batch=r['batch_size'], median_s=r['median_s'],
                       images_per_s=r['images_per_s'],
                       peak_mem_bytes=r['peak_mem_bytes'],
                       first_step_s=r.get('first_step_s'),
                       graph_breaks=r.get('graph_breaks'),
                       flops_per_image=r.get('flops_per_image'),
                       profile=r.get('profile'), img_size=r['img_size'])
        found = r.get('max_batch')
        if found:
            row.update(max_batch=found['max_batch'],
                       max_batch_capped=found['capped'],
                       max_batch_exact=found['exact'],
                       max_batch_step=found['step'],
                       max_batch_peak_bytes=found.get('peak_mem_bytes'))
    return table


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or not b else a / b


def targets(table: dict) -> List[dict]:
    """The issue's targets per (model, amp, compiled), with verdicts."""
    out = []
    for model in MODELS:
        for amp in ('bf16', 'fp16'):
            for comp in (False, True):
                um = table.get((model, 'ummae', amp, comp), {})
                sm = table.get((model, 'simmim', amp, comp), {})
                t = _ratio(um.get('median_s'), sm.get('median_s'))
                m = _ratio(um.get('peak_mem_bytes'),
                           sm.get('peak_mem_bytes'))
                entry = dict(model=model, amp=amp, compile=comp,
                             time_ratio=t, time_limit=TIME_RATIO_MAX[model],
                             memory_ratio=m, memory_limit=MEMORY_RATIO_MAX,
                             max_batch_ratio=_ratio(um.get('max_batch'),
                                                    sm.get('max_batch')),
                             same_batch=um.get('batch') == sm.get('batch'))
                entry['time_met'] = (None if t is None else
                                     t <= TIME_RATIO_MAX[model])
                entry['memory_met'] = (None if m is None else
                                       m <= MEMORY_RATIO_MAX)
                if model == 'swin-t':
                    rate = um.get('images_per_s')
                    entry.update(rate=rate, rate_limit=RATE_FACTOR *
                                 PAPER_RATE, rate_met=None if rate is None
                                 else rate >= RATE_FACTOR * PAPER_RATE)
                out.append(entry)
    return out


def _f(v, spec: str, none: str = '-') -> str:
    return none if v is None else format(v, spec)


def _verdict(met: Optional[bool]) -> str:
    return {None: 'not measured', True: '**met**',
            False: '**NOT met**'}[met]


def markdown(table: dict, goals: List[dict], meta: dict) -> str:
    """The tables of gpu_check.md."""
    lines = [
        '# GPU check: UM-MAE against SimMIM, one pre-training step', '',
        f'- machine: {meta.get("device_name", "?")}; torch '
        f'{meta.get("torch", "?")}, Python {meta.get("python", "?")}, '
        f'mmpretrain {meta.get("mmpretrain", "?")}, mmengine '
        f'{meta.get("mmengine", "?")}; commit {meta.get("git_commit", "?")}',
        f'- command: `{meta.get("command", "?")}`',
        f'- wall time of the check: {_f(meta.get("wall_s"), ".0f")} s '
        f'(budget {_f(meta.get("budget"), ".0f")} s)', '',
        '## Runs', '',
        '| model | variant | amp | compile | img | batch | median step ms '
        '| img/s | peak GiB | largest batch | first step s | graph breaks |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|'
    ]
    for key in sorted(table, key=lambda k: (MODELS.index(k[0]) if k[0] in
                                            MODELS else 9, k[2], k[3],
                                            k[1] != 'ummae')):
        r = table[key]
        mb = r.get('max_batch')
        if mb is not None:
            mb = (f'{mb}' + (' (limit)' if r.get('max_batch_capped') else '')
                  + ('' if r.get('max_batch_exact') else ' (time budget)'))
        peak = r.get('peak_mem_bytes')
        lines.append(
            f'| {r["model"]} | {r["variant"]} | {r["amp"]} | '
            f'{"yes" if r["compile"] else "no"} | {_f(r.get("img_size"), "d")}'
            f' | {_f(r.get("batch"), "d")} | '
            f'{_f(r.get("median_s") and r["median_s"] * 1e3, ".1f")} | '
            f'{_f(r.get("images_per_s"), ".1f")} | '
            f'{_f(peak and peak / 2**30, ".2f")} | {mb or "-"} | '
            f'{_f(r.get("first_step_s"), ".1f")} | '
            f'{_f(r.get("graph_breaks"), "d")} |')
    lines += ['', '## Targets (one GPU, same run, same batch)', '',
              '| model | amp | compile | UM-MAE/SimMIM step time | target | '
              'peak memory ratio | target | largest-batch ratio | Swin-T '
              f'UM-MAE img/s (target >= {RATE_FACTOR * PAPER_RATE:.0f}) |',
              '|---|---|---|---|---|---|---|---|---|']
    for g in goals:
        rate = ('-' if g['model'] != 'swin-t' else
                f'{_f(g.get("rate"), ".1f")}: {_verdict(g.get("rate_met"))}')
        lines.append(
            f'| {g["model"]} | {g["amp"]} | '
            f'{"yes" if g["compile"] else "no"} | '
            f'{_f(g["time_ratio"], ".3f")} | <= {g["time_limit"]:.2f}: '
            f'{_verdict(g["time_met"])} | {_f(g["memory_ratio"], ".3f")} | '
            f'<= {g["memory_limit"]:.2f}: {_verdict(g["memory_met"])} | '
            f'{_f(g["max_batch_ratio"], ".2f")} | {rate} |')
    lines += ['', f'Paper rate: {IMAGENET_TRAIN} images x {EPOCHS} epochs / '
              f'({PAPER_HOURS} h x {PAPER_GPUS} GPUs) = {PAPER_RATE:.1f} '
              'img/s per GPU (Swin-T UM-MAE).']
    problems = [(k, p) for k, r in table.items()
                for p in r.get('problems', [])]
    skipped = [p for p in meta.get('phases', [])
               if p.get('status') != 'ok']
    if problems or skipped:
        lines += ['', '## Not measured', '']
        lines += list(dict.fromkeys(
            f'- phase {p["phase"]}: {p.get("status")}'
            f'{": " + p["reason"] if p.get("reason") else ""}'
            for p in skipped))
        lines += [f'- {k[0]}/{k[1]} {k[2]}'
                  f'{" compiled" if k[3] else ""}: {p}' for k, p in problems]
    profiled = [r for r in table.values() if r.get('profile')]
    if profiled:
        lines += ['', '## Profile: top entries of one step', '']
    for r in profiled:
        prof = r['profile']
        dev = prof.get('sort_by', '').startswith('self_device')
        lines += ['', f'### {r["model"]} {r["variant"]} ({r["amp"]}, '
                  f'{"compiled" if r["compile"] else "eager"}, batch '
                  f'{r.get("batch")}): {prof["step_s"] * 1e3:.1f} ms under '
                  'the profiler', '',
                  '| operator | calls | self device ms | % | self CPU ms | % |'
                  if dev else '| operator | calls | self CPU ms | % |',
                  '|---|---|---|---|---|---|' if dev else '|---|---|---|---|']
        for e in prof['top'][:12]:
            name = e['name'].replace('|', '/')[:60]
            if dev:
                lines.append(f'| `{name}` | {e["calls"]} | '
                             f'{e.get("self_device_ms", 0):.2f} | '
                             f'{e.get("self_device_pct", 0):.1f} | '
                             f'{e["self_cpu_ms"]:.2f} | '
                             f'{e["self_cpu_pct"]:.1f} |')
            else:
                lines.append(f'| `{name}` | {e["calls"]} | '
                             f'{e["self_cpu_ms"]:.2f} | '
                             f'{e["self_cpu_pct"]:.1f} |')
    return '\n'.join(lines) + '\n'


def _meta(raw_dir: str) -> dict:
    """Machine description of the first phase that wrote one."""
    if not osp.isdir(raw_dir):
        return {}
    for phase in sorted(os.listdir(raw_dir)):
        path = osp.join(raw_dir, phase, 'benchmark.json')
        if osp.exists(path):
            with open(path) as f:
                return json.load(f).get('machine', {})
    return {}


def write_outputs(raw_dir: str, out_dir: str, meta: dict) -> dict:
    """gpu_check.md, results.json, profiles.txt and raw.tar.gz."""
    os.makedirs(out_dir, exist_ok=True)
    results = load_results(raw_dir)
    table = rows(results)
    goals = targets(table)
    meta = dict(_meta(raw_dir), **meta)
    md = markdown(table, goals, meta)
    with open(osp.join(out_dir, 'gpu_check.md'), 'w') as f:
        f.write(md)
    summary = dict(meta=meta, targets=goals, rows=[
        dict(v, profile=None) for v in table.values()], results=results)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    with open(osp.join(out_dir, 'profiles.txt'), 'w') as f:
        for phase in sorted(os.listdir(raw_dir)) if osp.isdir(raw_dir) \
                else []:
            for name in sorted(os.listdir(osp.join(raw_dir, phase))):
                if name.startswith('profile_'):
                    with open(osp.join(raw_dir, phase, name)) as p:
                        f.write(f'===== {phase}/{name}\n{p.read()}\n')
    with tarfile.open(osp.join(out_dir, 'raw.tar.gz'), 'w:gz') as tar:
        if osp.isdir(raw_dir):
            tar.add(raw_dir, arcname='raw')
    print(md, flush=True)
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--raw-dir', default=None,
                        help='where the phases write (default: a new '
                        'temporary folder; raw.tar.gz packs it)')
    parser.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    parser.add_argument('--quick', action='store_true',
                        help='tiny archs, 64 px, batch 2, 2 steps (a CPU '
                        'rehearsal of the whole check)')
    parser.add_argument('--budget', type=float, default=450.0,
                        help='seconds for all phases (default 450)')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--max-batch-step', type=int, default=32)
    parser.add_argument('--compile-backend', default='inductor')
    parser.add_argument('--compile-scope', default='blocks',
                        choices=['blocks', 'parts'])
    parser.add_argument('--phases', nargs='+', choices=PHASES,
                        default=list(PHASES))
    parser.add_argument('--report-only', action='store_true',
                        help='only write the outputs from --raw-dir')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.report_only and not args.raw_dir:
        raise SystemExit('--report-only needs --raw-dir (the folder of an '
                         'earlier run, e.g. raw/ unpacked from raw.tar.gz)')
    # outside --out-dir: the device tool brings back at most 8 files
    raw = args.raw_dir or tempfile.mkdtemp(prefix='gpu_check_raw_')
    t0 = time.time()
    phases = [] if args.report_only else run_phases(
        raw, args.phases, args.device, args.quick, args.budget,
        args.batch_size, args.max_batch_step, args.compile_backend,
        args.compile_scope)
    cmd = 'python ' + ' '.join([osp.relpath(__file__)] + (
        sys.argv[1:] if argv is None else list(argv)))
    return write_outputs(raw, args.out_dir, dict(
        phases=phases, wall_s=time.time() - t0, budget=args.budget,
        command=cmd, quick=args.quick))


if __name__ == '__main__':
    main()
