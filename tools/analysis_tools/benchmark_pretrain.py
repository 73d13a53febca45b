"""Benchmark one pre-training step: UM-MAE against SimMIM (and MAE on ViT).

Every variant is built from a config in ``configs/`` (``--model`` picks a
preset of configs, see ``pretrain_bench/variants.py``; ``--cfg-options``
changes them, e.g. to tiny test sizes). What is timed is the training step
as mmengine runs it, after the data preprocessor::

    forward + loss -> backward -> optimizer step -> zero_grad

with the model, optimizer wrapper (the config's AdamW and its
``paramwise_cfg``) and masks (the config's mask generator) all from the
config; the images are random. ``--warmup`` untimed steps, then ``--steps``
timed ones: median, min and max step time, images/s = batch / median.

Memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the peak RSS
of a fresh worker process per variant (``--no-subprocess``: one process,
peak not isolated). FLOPs: forward FLOPs per image of the loss
(``torch.utils.flop_counter``, batch 1).

Usage::

    python tools/analysis_tools/benchmark_pretrain.py --model swin-t pvt-s \\
        --batch-size 8 --steps 7 --warmup 2 --out-dir work_dirs/benchmark

Outputs: a table on stdout, ``benchmark.json`` and ``benchmark.png`` in
``--out-dir``.
"""
import argparse
import datetime
import json
import os
import os.path as osp
import resource
import shlex
import subprocess
import sys
import tempfile
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from pretrain_bench import report, step, variants  # noqa: E402
from pretrain_bench.flops import count_forward_flops  # noqa: E402

if variants.REPO_ROOT not in sys.path:  # mmumae without pip install -e
    sys.path.insert(0, variants.REPO_ROOT)


def _rss_bytes() -> Optional[int]:
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError):
        return None


def _peak_rss_bytes() -> int:
    """Peak RSS of this process (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024


def _backbone_geometry(cfg) -> dict:
    bb = cfg.model.backbone
    keys = ('type', 'arch', 'window_size', 'sr_ratios', 'stage_cfgs',
            'img_size', 'patch_size', 'mask_ratio')
    return {k: bb[k] for k in keys if k in bb}


def profile_step(run_step, device, path: str, row_limit: int = 30) -> dict:
    """One more step under :mod:`torch.profiler`; top operators.

    Writes the operator table (by self CPU time, self device time on CUDA)
    to ``path``.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step_s = run_step()[0]
    events = prof.key_averages()
    sort_by = ('self_device_time_total' if device.type == 'cuda' else
               'self_cpu_time_total')
    with open(path, 'w') as f:
        f.write(events.table(sort_by=sort_by, row_limit=row_limit))
    total = max(sum(e.self_cpu_time_total for e in events), 1)
    top = sorted(events, key=lambda e: e.self_cpu_time_total,
                 reverse=True)[:row_limit]
    return dict(step_s=step_s, table_file=path, top=[
        dict(name=e.key, calls=e.count,
             self_cpu_ms=e.self_cpu_time_total / 1e3,
             self_cpu_pct=100 * e.self_cpu_time_total / total)
        for e in top])


def _memory(result: dict, spec: dict, device, rss_base) -> None:
    import torch
    if device.type == 'cuda':
        result['peak_mem_bytes'] = int(torch.cuda.max_memory_allocated())
        result['peak_mem_kind'] = 'torch.cuda.max_memory_allocated'
        return
    result['peak_mem_bytes'] = _peak_rss_bytes()
    if spec['isolated'] and rss_base:
        result['peak_mem_above_baseline_bytes'] = (
            result['peak_mem_bytes'] - rss_base)
    result['peak_mem_kind'] = (
        'peak RSS of a fresh process' if spec['isolated'] else
        'peak RSS of this process so far (not isolated: --no-subprocess)')


def run_variant(spec: dict) -> dict:
    """Build one variant from its config and time it; a result dict."""
    import torch
    from mmengine.logging import MMLogger
    rss_base = _rss_bytes()  # interpreter + imports, before any model
    result = dict(model=spec['model'], variant=spec['variant'],
                  title=variants.VARIANT_TITLES[spec['variant']],
                  config=spec['config'], cfg_options=spec['cfg_options'],
                  batch_size=spec['batch_size'], device=spec['device'],
                  precision=spec['precision'], warmup=spec['warmup'],
                  steps=spec['steps'], notes=[])
    cfg = variants.load_variant(spec['config'], spec['cfg_options'],
                                spec['img_size'])
    missing = variants.missing_classes(cfg)
    if missing:
        return dict(result, status='skipped', reason=(
            f'{", ".join(missing)} is not registered; skipped.'))
    img = variants.config_input_size(cfg) if not spec['img_size'] else \
        spec['img_size']
    if spec['threads']:
        torch.set_num_threads(spec['threads'])
    torch.manual_seed(spec['seed'])
    device = torch.device(spec['device'])
    logger = MMLogger.get_current_instance()
    level, _ = logger.level, logger.setLevel('WARNING')  # init messages
    try:
        model, wrapper = step.build(cfg, spec['precision'], device)
    finally:
        logger.setLevel(level)
    batches = step.BatchMaker(cfg, img, spec['seed'])
    result.update(img_size=img, threads=torch.get_num_threads(),
                  geometry=_backbone_geometry(cfg),
                  mask=batches.mask_kind,
                  optimizer=step.optimizer_summary(wrapper),
                  params=sum(p.numel() for p in model.parameters()
                             if p.requires_grad),
                  rss_baseline_bytes=rss_base)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    run = step.make_step(model, wrapper, batches, spec['batch_size'], device)
    label = f'{spec["model"]}/{spec["variant"]}'
    result.update(step.time_steps(run, spec['warmup'], spec['steps'], label))
    result['images_per_s'] = spec['batch_size'] / result['median_s']
    _memory(result, spec, device, rss_base)
    one = model.data_preprocessor(batches(1), True)
    (result['flops_per_image'], result['flops_by_module'],
     result['flops_by_op']) = count_forward_flops(model, one)
    if spec['profile_dir']:
        os.makedirs(spec['profile_dir'], exist_ok=True)
        path = osp.join(spec['profile_dir'],
                        f'profile_{spec["model"]}_{spec["variant"]}.txt')
        result['profile'] = profile_step(run, device, path)
    result['status'] = 'ok'
    return result


def _run_in_subprocess(spec: dict, tmpdir: str) -> dict:
    name = f'{spec["model"]}_{spec["variant"]}'
    spec_file = osp.join(tmpdir, f'{name}_spec.json')
    out_file = osp.join(tmpdir, f'{name}_result.json')
    with open(spec_file, 'w') as f:
        json.dump(dict(spec, isolated=True), f)
    cmd = [sys.executable, osp.abspath(__file__), '--worker', spec_file,
           '--result-file', out_file]
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not osp.exists(out_file):
        tail = proc.stderr.strip().splitlines()[-15:]
        print('\n'.join(tail), file=sys.stderr, flush=True)
        return dict(model=spec['model'], variant=spec['variant'],
                    status='failed', reason=f'worker exited with '
                    f'{proc.returncode}: {tail[-1] if tail else ""}')
    with open(out_file) as f:
        return json.load(f)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time a full pre-training step (forward, backward, '
        'optimizer step) of UM-MAE and its baselines, each built from a '
        'config in configs/, and report step time, peak memory, forward '
        'FLOPs, ratios and targets.')
    parser.add_argument('--model', nargs='+', default=['swin-t'],
                        choices=list(variants.PRESETS),
                        help='presets of configs (default: swin-t)')
    parser.add_argument('--variants', nargs='+', choices=variants.VARIANTS,
                        default=None, help='subset of the variants (default:'
                        ' all a preset has)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=variants.CfgOptionsAction,
        default={}, help="KEY=VALUE merged into every variant's config "
        '(mmengine syntax, plus Python literals such as '
        "\"model.backbone.arch={'embed_dims': 32}\"); VARIANT:KEY=VALUE "
        'changes one variant only')
    parser.add_argument('--img-size', type=int, default=None,
                        help="input size (default: the config's crop size)")
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--precision', choices=step.PRECISIONS,
                        default='fp32', help='bf16/fp16: mmengine '
                        'AmpOptimWrapper of that dtype (CUDA only)')
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=1,
                        help='run all variants this many times, '
                        'round-robin, and pool their timed steps (fairer '
                        'comparisons while the load changes)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads in every worker')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--profile', action='store_true',
                        help='profile one more step of each variant with '
                        'torch.profiler (OUT_DIR/profile_MODEL_VARIANT.txt)')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_pretrain')
    parser.add_argument('--no-subprocess', action='store_true',
                        help='all variants in this process (peak memory '
                        'then not per variant)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--result-file', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.rounds) < 1 or args.warmup < 0:
        parser.error('--steps, --batch-size and --rounds must be >= 1, '
                     '--warmup >= 0')
    return args


def _specs(args: argparse.Namespace) -> List[dict]:
    """One spec per (preset, variant); skipped ones carry a reason."""
    specs = []
    for model in args.model:
        names = args.variants or list(variants.PRESETS[model]['variants'])
        for variant in names:
            path, options, skip = variants.variant_spec(model, variant)
            options.update(variants.options_for(variant, args.cfg_options))
            specs.append(dict(
                model=model, variant=variant, config=path,
                cfg_options=options, skip=skip, img_size=args.img_size,
                batch_size=args.batch_size, device=args.device,
                precision=args.precision, warmup=args.warmup,
                steps=args.steps, threads=args.threads, seed=args.seed,
                isolated=False,
                profile_dir=args.out_dir if args.profile else None))
    return specs


def _run_all(specs: List[dict], rounds: int, in_process: bool) -> List[dict]:
    """Every spec, ``rounds`` times round-robin; one merged result each."""
    runs: List[List[dict]] = [[] for _ in specs]
    with tempfile.TemporaryDirectory(prefix='bench_pretrain_') as tmp:
        for k in range(rounds):
            for i, spec in enumerate(specs):
                label = (f'[round {k + 1}/{rounds}] '
                         f'{spec["model"]}/{spec["variant"]}')
                if spec['skip']:
                    if k == 0:
                        print(f'{label}: SKIPPED: {spec["skip"]}', flush=True)
                    runs[i] = [dict(model=spec['model'],
                                    variant=spec['variant'],
                                    status='skipped', reason=spec['skip'])]
                    continue
                print(f'{label}: {spec["config"]}', flush=True)
                runs[i].append(run_variant(spec) if in_process else
                               _run_in_subprocess(spec, tmp))
    return [step.merge_rounds(r) for r in runs]


def _command(argv) -> str:
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(['python', osp.relpath(__file__)] + args)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:  # one variant, in a fresh process
        with open(args.worker) as f:
            result = run_variant(json.load(f))
        with open(args.result_file, 'w') as f:
            json.dump(result, f)
        return result
    if args.threads:  # recorded in the machine info; workers set it too
        import torch
        torch.set_num_threads(args.threads)
    machine = report.machine_info(args.device)
    command = _command(argv)
    print(f'command: {command}\nmachine: {machine}', flush=True)
    results = _run_all(_specs(args), args.rounds, args.no_subprocess)
    machine['loadavg_end'] = report.loadavg()
    ratios = report.compute_ratios(results)
    targets = report.check_targets(ratios)
    table = report.format_table(results, ratios, targets, args.device)
    print(f'\n{table}\n\ncommand: {command}\nmachine: {machine}')
    os.makedirs(args.out_dir, exist_ok=True)
    out = dict(command=command, machine=machine,
               date=datetime.datetime.now().isoformat(timespec='seconds'),
               args={k: v for k, v in vars(args).items()
                     if k not in ('worker', 'result_file')},
               results=results, ratios=ratios, targets=targets, table=table)
    with open(osp.join(args.out_dir, 'benchmark.json'), 'w') as f:
        json.dump(out, f, indent=2)
    report.plot(results, osp.join(args.out_dir, 'benchmark.png'),
                args.device)
    print(f'wrote {args.out_dir}/benchmark.json and benchmark.png')
    return out


if __name__ == '__main__':
    main()
