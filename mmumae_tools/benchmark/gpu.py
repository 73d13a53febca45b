"""The GPU benchmark (``tools/analysis_tools/gpu_check.sh``): Swin-T and
PVT-S at 256 px, UM-MAE against SimMIM, in four runs: bf16 and fp16, eager
and regionally compiled, each with the largest-batch search (the eager
bf16 run also profiles); OUT_DIR/gpu_benchmark.md gathers the tables.
Arguments after ``--`` go to every run, e.g. ``-- --batch-size 64``."""
import argparse
import os
import os.path as osp
import shlex
import sys
from typing import List, Optional

from . import cli

RUNS = ('eager-bf16', 'compile-bf16', 'eager-fp16', 'compile-fp16')


def run_argv(name: str, out_dir: str, extra: List[str]) -> List[str]:
    """The benchmark's command line of one run."""
    kind, amp = name.split('-')
    return ['--model', 'swin-t', 'pvt-s', '--variants', 'ummae', 'simmim',
            '--device', 'cuda', '--amp', amp, '--batch-size', '128',
            '--steps', '10', '--warmup', '3', '--max-batch',
            '--max-batch-step', '32', '--out-dir', osp.join(out_dir, name)
            ] + {'compile': ['--compile', '--compile-scope', 'blocks'],
                 'eager': ['--profile'] * (amp == 'bf16')}[kind] + extra


def main(argv: Optional[List[str]] = None) -> str:
    """Run the GPU benchmark; the markdown it wrote."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index('--') if '--' in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out-dir', default='work_dirs/gpu_benchmark')
    p.add_argument('--runs', nargs='+', choices=RUNS, default=list(RUNS))
    args = p.parse_args(argv[:cut])
    results, notes, machine = [], [], '?'
    for name in args.runs:
        try:
            out = cli.main(run_argv(name, args.out_dir, argv[cut + 1:]))
            results, machine = results + out['results'], out['machine']
        except (Exception, SystemExit) as e:  # the other runs go on
            notes.append(f'- {name}: not run: ' + (
                'its options were refused (see the log)' if isinstance(
                    e, SystemExit) else f'{type(e).__name__}: {e}'))
    md = '\n'.join([
        '# GPU benchmark: UM-MAE against SimMIM, one pre-training step', '',
        '- command: `' + shlex.join(['python', '-m', __spec__.name, *argv])
        + '`', f'- machine: {machine}', '', cli.report(results),
        *([''] + notes) * bool(notes), ''])
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'gpu_benchmark.md'), 'w') as f:
        f.write(md)
    print(md, flush=True)
    return md


if __name__ == '__main__':
    main()
