"""The GPU benchmark: UM-MAE against SimMIM on one CUDA GPU, in tables.

Swin-T and PVT-S at 256 px, UM-MAE against SimMIM at the reference
geometry, in four runs of the benchmark: bf16 and fp16, eager and
``torch.compile`` (regional, ``--compile-scope blocks``), each timing
10 steps after 3 and searching the largest batch; the eager bf16 run
also profiles a step. Each run writes its folder in ``--out-dir``, and
``gpu_benchmark.md`` gathers the tables. Arguments after ``--`` go to
every run (later ones win), e.g. ``-- --img-size 64 --batch-size 2``::

    python -m mmumae_tools.benchmark.gpu --out-dir work_dirs/gpu_benchmark
"""
import argparse
import os
import os.path as osp
import shlex
import sys
from typing import List, Optional

from . import cli

RUNS = ('eager-bf16', 'compile-bf16', 'eager-fp16', 'compile-fp16')


def run_argv(name: str, args: argparse.Namespace) -> List[str]:
    """The benchmark's command line of one run."""
    kind, amp = name.split('-')
    argv = ['--model', 'swin-t', 'pvt-s', '--variants', 'ummae', 'simmim',
            '--device', 'cuda', '--amp', amp, '--batch-size',
            str(args.batch_size), '--steps', '10', '--warmup', '3',
            '--max-batch', '--max-batch-step', str(args.max_batch_step),
            '--out-dir', osp.join(args.out_dir, name)]
    if kind == 'compile':
        argv += ['--compile', '--compile-scope', args.compile_scope]
    elif amp == 'bf16':
        argv.append('--profile')
    return argv + args.extra


def main(argv: Optional[List[str]] = None) -> str:
    """Run the GPU benchmark; the markdown it wrote."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index('--') if '--' in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out-dir', default='work_dirs/gpu_benchmark')
    p.add_argument('--runs', nargs='+', choices=RUNS, default=list(RUNS))
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--max-batch-step', type=int, default=32)
    p.add_argument('--compile-scope', choices=['blocks', 'parts'],
                   default='blocks')
    args = p.parse_args(argv[:cut])
    args.extra = argv[cut + 1:]
    results, notes, machine = [], [], '?'
    for name in args.runs:
        try:
            out = cli.main(run_argv(name, args))
            results += out['results']
            machine = out['machine']
        except (Exception, SystemExit) as e:  # the other runs go on
            why = ('its options were refused (see the log)' if isinstance(
                e, SystemExit) else f'{type(e).__name__}: {e}')
            notes.append(f'- {name}: not run: {why}')
    md = '\n'.join([
        '# GPU benchmark: UM-MAE against SimMIM, one pre-training step', '',
        '- command: `' + shlex.join(['python', '-m', __spec__.name, *argv])
        + '`', f'- machine: {machine}',
        '', cli.report(results), *([''] + notes) * bool(notes), ''])
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'gpu_benchmark.md'), 'w') as f:
        f.write(md)
    print(md, flush=True)
    return md


if __name__ == '__main__':
    main()
