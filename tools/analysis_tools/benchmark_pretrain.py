"""Benchmark one pre-training step: UM-MAE against SimMIM (and MAE on ViT).

Every variant is built from a config in ``configs/`` (``--model`` picks a
preset of configs, see ``pretrain_bench/variants.py``; ``--cfg-options``
changes them, e.g. to tiny test sizes). What is timed is the training step
as mmengine runs it, after the data preprocessor::

    forward + loss -> backward -> optimizer step -> zero_grad

with the model, optimizer wrapper (the config's AdamW and its
``paramwise_cfg``) and masks (the config's mask generator) all from the
config; the images are random (one batch, made once). ``--warmup``
untimed steps, then ``--steps`` timed ones: median, min and max step time,
images/s = batch / median.

``--device cpu|cuda``; ``--amp none|bf16|fp16`` (CUDA: mmengine's
``AmpOptimWrapper`` of that dtype; CPU: bf16 through mmengine's CPU
autocast, fp16 refused); ``--compile`` (``torch.compile`` of the backbone,
the neck and the head's loss; also on a CPU); ``--max-batch`` (the largest
batch whose step fits, doubling then bisecting; on a CPU bounded by
``--max-batch-limit`` and ``--max-batch-rss-gib``).

Memory: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the peak RSS
of a fresh worker process per variant (``--no-subprocess``: one process,
peak not isolated). FLOPs: forward FLOPs per image of the loss
(``torch.utils.flop_counter``, batch 1, eager fp32).

Usage::

    python tools/analysis_tools/benchmark_pretrain.py --model swin-t pvt-s \\
        --batch-size 8 --steps 7 --warmup 2 --out-dir work_dirs/benchmark
    python tools/analysis_tools/benchmark_pretrain.py --model swin-t \\
        --device cuda --amp bf16 --compile --max-batch --batch-size 128

Outputs: a table on stdout, ``benchmark.json`` and ``benchmark.png`` in
``--out-dir``, and ``results.jsonl`` (one line per finished variant, written
as it finishes, so a run stopped early keeps what it measured).
"""
import argparse
import copy
import datetime
import gc
import json
import os
import os.path as osp
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
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

    Writes the operator table (by self CPU time; on CUDA by self device
    time) to ``path``; ``top`` lists the same order, with both times.
    """
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step_s = run_step()[0]
    events = prof.key_averages()

    def dev_us(e) -> float:
        return float(getattr(e, 'self_device_time_total', 0.0) or 0.0)

    on_dev = device.type == 'cuda'
    sort_by = 'self_device_time_total' if on_dev else 'self_cpu_time_total'
    with open(path, 'w') as f:
        f.write(events.table(sort_by=sort_by, row_limit=row_limit))
    total = max(sum(e.self_cpu_time_total for e in events), 1)
    dev_total = max(sum(dev_us(e) for e in events), 1)
    key = dev_us if on_dev else (lambda e: e.self_cpu_time_total)
    top = sorted(events, key=key, reverse=True)[:row_limit]
    return dict(step_s=step_s, table_file=path, sort_by=sort_by, top=[
        dict(name=e.key, calls=e.count,
             self_cpu_ms=e.self_cpu_time_total / 1e3,
             self_cpu_pct=100 * e.self_cpu_time_total / total,
             self_device_ms=dev_us(e) / 1e3,
             self_device_pct=100 * dev_us(e) / dev_total)
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


def _compile(model, spec: dict, result: dict) -> None:
    if not spec['compile']:
        return
    result['dynamo_before'] = step.dynamo_counts()
    result['compiled_parts'] = step.compile_parts(
        model, backend=spec['compile_backend'], mode=spec['compile_mode'],
        fullgraph=spec['compile_fullgraph'], scope=spec['compile_scope'])
    result['compile_cfg'] = dict(backend=spec['compile_backend'],
                                 mode=spec['compile_mode'],
                                 fullgraph=spec['compile_fullgraph'],
                                 scope=spec['compile_scope'])


def _max_batch(model, wrapper_box: list, wrapper_cfg: dict, batches,
               device, autocast, spec: dict, deadline) -> dict:
    """``--max-batch``: the search with real steps; its summary."""
    from mmengine.optim import build_optim_wrapper
    from pretrain_bench import maxbatch

    def run_batch(n: int) -> None:
        data = step.prepare(model, batches, n)
        try:
            step.make_step(model, wrapper_box[0], data, device, autocast)()
        finally:
            del data

    def fresh_wrapper() -> None:
        wrapper_box[0] = None
        maxbatch.free_cuda()
        wrapper_box[0] = build_optim_wrapper(model, copy.deepcopy(wrapper_cfg))

    rss_limit = (None if device.type == 'cuda' else
                 int(spec['max_batch_rss_gib'] * 2**30))
    log: list = []
    fits = maxbatch.step_fits(run_batch, device, rss_limit, log, fresh_wrapper)
    best, info = maxbatch.find_max_batch(
        fits, start=spec['max_batch_start'] or spec['batch_size'],
        limit=spec['max_batch_limit'], step=spec['max_batch_step'],
        deadline=deadline)
    fitted = [e for e in log if e['fits'] and e['batch'] == best]
    return dict(info, max_batch=best, limit=spec['max_batch_limit'],
                step=spec['max_batch_step'], rss_limit_bytes=rss_limit,
                log=log, peak_mem_bytes=(fitted[-1]['peak_mem_bytes']
                                         if fitted else None))


def run_variant(spec: dict) -> dict:
    """Build one variant from its config and time it; a result dict."""
    import torch
    from mmengine.logging import MMLogger
    rss_base = _rss_bytes()  # interpreter + imports, before any model
    result = dict(model=spec['model'], variant=spec['variant'],
                  title=variants.VARIANT_TITLES[spec['variant']],
                  config=spec['config'], cfg_options=spec['cfg_options'],
                  batch_size=spec['batch_size'], device=spec['device'],
                  amp=spec['amp'], compile=spec['compile'],
                  warmup=spec['warmup'], steps=spec['steps'], notes=[])
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
        model, wrapper, wrapper_cfg = step.build(cfg, spec['amp'], device)
    finally:
        logger.setLevel(level)
    batches = step.BatchMaker(cfg, img, spec['seed'], spec['pool'])
    result.update(img_size=img, threads=torch.get_num_threads(),
                  geometry=_backbone_geometry(cfg),
                  mask=batches.mask_kind,
                  optimizer=step.optimizer_summary(wrapper),
                  params=sum(p.numel() for p in model.parameters()
                             if p.requires_grad),
                  rss_baseline_bytes=rss_base)
    if spec['flops']:  # eager fp32, before any compilation
        one = step.prepare(model, batches, 1)
        (result['flops_per_image'], result['flops_by_module'],
         result['flops_by_op']) = count_forward_flops(model, one)
        del one
    _compile(model, spec, result)
    autocast = step.autocast_context(spec['amp'], device.type)
    data = step.prepare(model, batches, spec['batch_size'])
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    run = step.make_step(model, wrapper, data, device, autocast)
    label = f'{spec["model"]}/{spec["variant"]}'
    result.update(step.time_steps(run, spec['warmup'], spec['steps'], label))
    result['images_per_s'] = spec['batch_size'] / result['median_s']
    _memory(result, spec, device, rss_base)
    if spec['compile']:
        result.update(step.dynamo_counts(result['dynamo_before']))
    if spec['profile_dir']:
        os.makedirs(spec['profile_dir'], exist_ok=True)
        tag = '_'.join(t for t in (spec['amp'] if spec['amp'] != 'none'
                                   else '', 'compile' if spec['compile']
                                   else '') if t)
        path = osp.join(spec['profile_dir'], f'profile_{spec["model"]}_'
                        f'{spec["variant"]}{"_" + tag if tag else ""}.txt')
        result['profile'] = profile_step(run, device, path)
    del run, data
    if spec['max_batch']:
        deadline = spec.get('deadline')
        deadline = None if deadline is None else \
            time.monotonic() + max(0.0, deadline - time.time())
        box = [wrapper]
        del wrapper
        result['max_batch'] = _max_batch(model, box, wrapper_cfg, batches,
                                         device, autocast, spec, deadline)
        found = result['max_batch']
        capped = ' (capped by the limit)' if found['capped'] else ''
        print(f'  {label}: largest batch {found["max_batch"]}{capped}, '
              f'trials {found["trials"]}', flush=True)
        if spec['compile']:
            result.update(step.dynamo_counts(result['dynamo_before']))
    result.pop('dynamo_before', None)
    result['status'] = 'ok'
    return result


def _run_safely(spec: dict) -> dict:
    """``run_variant`` in this process; a failure becomes a result."""
    try:
        return run_variant(spec)
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [''])[0][:300]
        return dict(model=spec['model'], variant=spec['variant'],
                    status='failed', reason=f'{type(e).__name__}: {first}')
    finally:
        gc.collect()
        if spec['device'] == 'cuda':
            import torch
            torch.cuda.empty_cache()


def _run_in_subprocess(spec: dict, tmpdir: str) -> dict:
    name = f'{spec["model"]}_{spec["variant"]}'
    spec_file = osp.join(tmpdir, f'{name}_spec.json')
    out_file = osp.join(tmpdir, f'{name}_result.json')
    if osp.exists(out_file):
        os.remove(out_file)
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


def _default_rss_gib() -> float:
    """Half of the memory available now (CPU ``--max-batch`` bound)."""
    avail = report._first_line('/proc/meminfo', 'MemAvailable')
    if avail:
        return round(int(avail.split()[0]) / 2**20 / 2, 2)
    return 4.0


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
    parser.add_argument(
        '--amp', choices=step.AMP, default='none',
        help='mixed precision: on CUDA mmengine AmpOptimWrapper of that '
        'dtype (dynamic loss scale); on a CPU bf16 through mmengine '
        "autocast(device_type='cpu') and a plain OptimWrapper, fp16 "
        'refused (mmengine has no CPU fp16). Default: none (fp32)')
    parser.add_argument(
        '--compile', action='store_true',
        help='torch.compile the backbone, the neck and the head loss '
        '(forward and backward; the algorithm glue stays eager)')
    parser.add_argument('--compile-backend', default='inductor',
                        help='torch.compile backend (default: inductor; '
                        'aot_eager traces without generating code)')
    parser.add_argument('--compile-mode', default=None,
                        help='torch.compile mode (default, reduce-overhead, '
                        'max-autotune, max-autotune-no-cudagraphs)')
    parser.add_argument('--compile-fullgraph', action='store_true',
                        help='fullgraph=True: a graph break is an error')
    parser.add_argument('--compile-scope', choices=['parts', 'blocks'],
                        default='parts', help='parts: backbone and neck '
                        'whole (default); blocks: their repeated blocks one '
                        'by one (regional compilation: much faster to '
                        'compile)')
    parser.add_argument(
        '--max-batch', action='store_true',
        help='after timing, find the largest batch whose step fits: '
        'doubling from --max-batch-start, then bisecting')
    parser.add_argument('--max-batch-start', type=int, default=None,
                        help='first batch tried (default: --batch-size)')
    parser.add_argument('--max-batch-limit', type=int, default=None,
                        help='largest batch tried (default: 64 on a CPU, '
                        '16384 on CUDA)')
    parser.add_argument('--max-batch-step', type=int, default=1,
                        help='granularity of the answer (default: 1)')
    parser.add_argument('--max-batch-rss-gib', type=float, default=None,
                        help='CPU: a batch whose step takes the peak RSS '
                        'above this does not fit (default: half of the '
                        'memory available at the start)')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the batch-1 FLOP count')
    parser.add_argument('--pool', type=int, default=64,
                        help='distinct random samples per batch (a larger '
                        'batch repeats them; default 64)')
    parser.add_argument('--time-budget', type=float, default=None,
                        help='seconds: no variant starts and no --max-batch '
                        'trial begins after this (the rest is reported as '
                        'skipped)')
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
                        'then not per variant on a CPU; on CUDA the peak '
                        'is reset per variant)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--result-file', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.rounds, args.pool,
           args.max_batch_step) < 1 or args.warmup < 0:
        parser.error('--steps, --batch-size, --rounds, --pool and '
                     '--max-batch-step must be >= 1, --warmup >= 0')
    if args.compile and args.warmup < 1:
        parser.error('--compile needs --warmup >= 1 (the first step '
                     'compiles; it must not be timed)')
    try:
        step.check_amp(args.amp, args.device)
    except ValueError as e:
        parser.error(str(e))
    if args.max_batch_limit is None:
        args.max_batch_limit = 16384 if args.device == 'cuda' else 64
    if args.max_batch_rss_gib is None:
        args.max_batch_rss_gib = _default_rss_gib()
    if args.max_batch and min(args.max_batch_limit,
                              args.max_batch_start or 1) < 1:
        parser.error('--max-batch-start and --max-batch-limit must be >= 1')
    if args.max_batch and args.max_batch_limit < args.max_batch_step:
        parser.error(f'--max-batch-limit {args.max_batch_limit} is smaller '
                     f'than --max-batch-step {args.max_batch_step}')
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
                amp=args.amp, compile=args.compile,
                compile_backend=args.compile_backend,
                compile_mode=args.compile_mode,
                compile_fullgraph=args.compile_fullgraph,
                compile_scope=args.compile_scope,
                max_batch=args.max_batch,
                max_batch_start=args.max_batch_start,
                max_batch_limit=args.max_batch_limit,
                max_batch_step=args.max_batch_step,
                max_batch_rss_gib=args.max_batch_rss_gib,
                flops=not args.no_flops, pool=args.pool,
                warmup=args.warmup, steps=args.steps, threads=args.threads,
                seed=args.seed, isolated=False,
                profile_dir=args.out_dir if args.profile else None))
    return specs


def _run_all(specs: List[dict], rounds: int, in_process: bool,
             jsonl: Optional[str] = None,
             budget: Optional[float] = None) -> List[dict]:
    """Every spec, ``rounds`` times round-robin; one merged result each.

    Each finished run is appended to ``jsonl``; past ``budget`` seconds no
    further run starts.
    """
    deadline = None if budget is None else time.time() + budget
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
                if deadline is not None and time.time() > deadline:
                    print(f'{label}: SKIPPED: time budget of {budget:.0f} s '
                          'spent', flush=True)
                    runs[i].append(dict(
                        model=spec['model'], variant=spec['variant'],
                        amp=spec['amp'], compile=spec['compile'],
                        status='skipped',
                        reason=f'time budget of {budget:.0f} s spent'))
                    continue
                print(f'{label}: {spec["config"]}', flush=True)
                spec = dict(spec, deadline=deadline)
                result = (_run_safely(spec) if in_process else
                          _run_in_subprocess(spec, tmp))
                if result.get('status') != 'ok':
                    print(f'{label}: {result.get("status", "?").upper()}: '
                          f'{result.get("reason")}', flush=True)
                runs[i].append(result)
                if jsonl:
                    with open(jsonl, 'a') as f:
                        f.write(json.dumps(dict(result, round=k + 1)) + '\n')
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
    os.makedirs(args.out_dir, exist_ok=True)
    jsonl = osp.join(args.out_dir, 'results.jsonl')
    if osp.exists(jsonl):
        os.remove(jsonl)
    results = _run_all(_specs(args), args.rounds, args.no_subprocess, jsonl,
                       args.time_budget)
    machine['loadavg_end'] = report.loadavg()
    ratios = report.compute_ratios(results)
    targets = report.check_targets(ratios)
    table = report.format_table(results, ratios, targets, args.device)
    print(f'\n{table}\n\ncommand: {command}\nmachine: {machine}')
    out = dict(command=command, machine=machine,
               date=datetime.datetime.now().isoformat(timespec='seconds'),
               args={k: v for k, v in vars(args).items()
                     if k not in ('worker', 'result_file')},
               results=results, ratios=ratios, targets=targets, table=table)
    with open(osp.join(args.out_dir, 'benchmark.json'), 'w') as f:
        json.dump(out, f, indent=2)
    report.plot(results, osp.join(args.out_dir, 'benchmark.png'),
                args.device)
    print(f'wrote {args.out_dir}/benchmark.json, results.jsonl and '
          'benchmark.png')
    return out


if __name__ == '__main__':
    main()
