"""tools/analysis_tools/benchmark_pretrain.py on tiny versions of the configs.

The tool runs for real (models and optimizer wrappers built from the
configs in configs/, timed steps, FLOP count, JSON) with tiny archs set
through ``--cfg-options`` at 64 px, 1-2 steps; the tests check what the
output must show: the statistics agree with the step times, the ratios
with the results, and the FLOPs with the geometry of the configs.
"""
import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'analysis_tools' / 'benchmark_pretrain.py'
SWIN = ("model.backbone.arch={'embed_dims': 32, 'depths': [1, 1, 1, 1], "
        "'num_heads': [1, 2, 4, 8]}")
PVT = ("model.backbone.arch={'embed_dims': [16, 32, 64, 128], 'depths': "
       "[1, 1, 1, 1], 'num_heads': [1, 1, 2, 4], 'mlp_ratios': [2, 2, 2, 2]}")
TINY_DECODER = ['ummae:model.neck.embed_dims=32', 'ummae:model.neck.depth=1',
                'ummae:model.neck.num_heads=2']
# mmpretrain's Swin asserts window <= map: 16, 8, 4, 2 at 64 px (the shrink
# our backbone does by itself)
STOCK_WINDOWS = ('simmim-stock:model.backbone.stage_cfgs=[' + ', '.join(
    f"{{'block_cfgs': {{'window_size': {w}}}}}" for w in (16, 8, 4, 2)) + ']')


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('benchmark_pretrain', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def swin_report(bench, tmp_path_factory):
    import torch
    out = tmp_path_factory.mktemp('bench')
    threads = torch.get_num_threads()
    try:
        report = bench.main([
            '--model', 'swin-t', '--img-size', '64', '--steps', '2',
            '--warmup', '0', '--threads', '1', '--no-subprocess',
            '--out-dir', str(out), '--cfg-options', SWIN,
            'model.neck.in_channels=256', STOCK_WINDOWS, *TINY_DECODER])
    finally:
        torch.set_num_threads(threads)
    return report, out


def _check_stats(r: dict, steps: int) -> None:
    _check_stats_no_flops(r, steps)
    assert r['flops_per_image'] == sum(r['flops_by_module'].values())


def _check_stats_no_flops(r: dict, steps: int) -> None:
    assert r['status'] == 'ok', r
    times = r['step_times_s']
    assert len(times) == steps == len(r['step_cpu_times_s'])
    assert r['min_s'] == pytest.approx(min(times), abs=1e-5)
    assert r['max_s'] == pytest.approx(max(times), abs=1e-5)
    assert r['median_s'] == pytest.approx(statistics.median(times), abs=1e-5)
    assert r['min_s'] <= r['median_s'] <= r['max_s']
    assert r['images_per_s'] == pytest.approx(r['batch_size'] / r['median_s'])
    assert math.isfinite(r['loss_last'])


def test_swin_variants_come_from_the_configs(swin_report):
    report, out = swin_report
    on_disk = json.loads((out / 'benchmark.json').read_text())
    assert on_disk['ratios'] == json.loads(json.dumps(report['ratios']))
    assert '--model swin-t' in on_disk['command']
    assert on_disk['machine']['cpu_cores'] >= 1
    res = {r['variant']: r for r in report['results']}
    assert list(res) == ['ummae', 'simmim', 'simmim-stock']
    for r in res.values():
        _check_stats(r, 2)
        assert r['img_size'] == 64 and r['batch_size'] == 8
        assert Path(REPO / r['config']).is_file()
        # the schedule's AdamW, fused, decay exemptions from paramwise_cfg
        assert r['optimizer']['optimizer'] == 'AdamW'
        assert r['optimizer']['fused'] is True
        assert 0 < r['optimizer']['params_no_decay'] < r['params']
    assert res['ummae']['config'].startswith('configs/ummae/ummae_swin')
    assert res['ummae']['geometry']['window_size'] == 8
    assert res['simmim']['geometry']['window_size'] == 16
    assert res['simmim-stock']['geometry']['type'] == 'SimMIMSwinTransformer'
    assert [r['mask'] for r in res.values()] == [
        'UniformMaskGenerator', 'RandomPatchMaskGenerator',
        'SimMIMMaskGenerator']


def test_swin_flops_follow_the_geometry(swin_report):
    """Compact grid: 1/4 of the tokens in every linear layer; window 8 on
    it against 16 on the full grid: 4x fewer tokens per window, so 1/16 of
    the window-attention products. Our SimMIM and the stock one: same
    FLOPs up to the position-bias MLP and the table lookup."""
    res = {r['variant']: r for r in swin_report[0]['results']}
    um = res['ummae']['flops_by_op']['backbone']
    sm = res['simmim']['flops_by_op']['backbone']
    stock = res['simmim-stock']['flops_by_op']['backbone']
    assert um['addmm'] / sm['addmm'] == pytest.approx(0.25, rel=1e-6)
    assert um['bmm'] / sm['bmm'] == pytest.approx(1 / 16, rel=1e-6)
    assert sm['addmm'] == stock['addmm'] and sm['bmm'] == stock['bmm']
    assert res['simmim']['flops_per_image'] == pytest.approx(
        res['simmim-stock']['flops_per_image'], rel=0.02)


def test_ratios_and_targets_agree_with_results(swin_report):
    report = swin_report[0]
    res = {r['variant']: r for r in report['results']}
    ratios = report['ratios']
    assert set(ratios) == {
        'swin-t: ummae/simmim', 'swin-t: ummae/simmim-stock',
        'swin-t: simmim/simmim-stock'
    }
    for r in ratios.values():
        a, b = res[r['numerator']], res[r['denominator']]
        assert r['time'] == pytest.approx(a['median_s'] / b['median_s'])
        assert r['cpu_time'] == pytest.approx(a['median_cpu_s'] /
                                              b['median_cpu_s'])
        assert r['flops'] == pytest.approx(a['flops_per_image'] /
                                           b['flops_per_image'])
    targets = {t['ratio']: t for t in report['targets']}
    um = targets['swin-t: ummae/simmim']
    assert um['limit'] == pytest.approx(
        ratios['swin-t: ummae/simmim']['flops'] + 0.03)
    assert targets['swin-t: simmim/simmim-stock']['limit'] == 1.0
    for t in targets.values():
        assert t['met'] == (t['time'] <= t['limit'])
        assert t['met_cpu'] == (t['cpu_time'] <= t['limit'])
        line = [ln for ln in report['table'].splitlines()
                if ln.startswith(f'target {t["ratio"]}:')]
        assert len(line) == 1
        assert (f'wall {t["time"]:.3f} ' +
                ('met' if t['met'] else 'NOT met')) in line[0]


def test_pvt_subprocess_isolated_memory(tmp_path):
    """Default mode: a fresh worker per variant (its own peak RSS)."""
    out = tmp_path / 'bench'
    proc = subprocess.run([
        sys.executable, str(TOOL), '--model', 'pvt-s', '--img-size', '64',
        '--steps', '1', '--warmup', '0', '--threads', '1', '--out-dir',
        str(out), '--cfg-options', PVT, 'model.neck.in_channels=128',
        *TINY_DECODER], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / 'benchmark.json').read_text())
    res = {r['variant']: r for r in report['results']}
    assert list(res) == ['ummae', 'simmim']  # no stock SimMIM for PVT
    for r in res.values():
        _check_stats(r, 1)
        assert r['peak_mem_kind'] == 'peak RSS of a fresh process'
        assert r['peak_mem_above_baseline_bytes'] == (
            r['peak_mem_bytes'] - r['rss_baseline_bytes'])
    assert res['ummae']['geometry']['sr_ratios'] == [4, 2, 1, 1]
    assert res['simmim']['geometry']['sr_ratios'] == [8, 4, 2, 1]
    # FFN and projection layers see a quarter of the tokens; keys/values
    # are pooled to the same count (sr doubled on the doubled grid), so the
    # backbone's linear layers cost more than 1/4 but far less than 1/2
    um = res['ummae']['flops_by_op']['backbone']['addmm']
    sm = res['simmim']['flops_by_op']['backbone']['addmm']
    assert 0.25 < um / sm < 0.4
    assert 'pvt-s: ummae/simmim' in proc.stdout


def test_variant_selection_and_options(bench):
    from pretrain_bench import variants
    path, _, skip = variants.variant_spec('pvt-s', 'simmim-stock')
    assert path is None and 'Swin only' in skip
    path, options, skip = variants.variant_spec('swin-l', 'simmim')
    assert skip is None and options['model.backbone.arch'] == 'large'
    opts = {'a.b': 1, 'ummae:c': 2, 'simmim:d': 3}
    assert variants.options_for('ummae', opts) == {'a.b': 1, 'c': 2}
    assert variants.options_for('mae', opts) == {'a.b': 1}
    with pytest.raises(ValueError, match='unknown variant prefix'):
        variants.options_for('ummae', {'umame:c': 1})
    args = bench.parse_args(['--cfg-options', "x={'k': [1, 2]}", 'y=1,2',
                             'z=abc'])
    assert args.cfg_options == {'x': {'k': [1, 2]}, 'y': [1, 2], 'z': 'abc'}
    cfg = variants.load_variant(variants.PRESETS['swin-t']['variants'][
        'simmim-stock'][0], {}, img_size=128)
    assert cfg.model.backbone.img_size == 128
    gen = [t for t in cfg.train_dataloader.dataset.pipeline
           if t['type'] == 'SimMIMMaskGenerator']
    assert gen[0]['input_size'] == 128


def test_optim_wrapper_amp(bench):
    import torch
    from pretrain_bench import step, variants
    cfg = variants.load_variant(variants.PRESETS['swin-t']['variants'][
        'simmim'][0], {})
    assert cfg.optim_wrapper.accumulative_counts == 8
    fp32 = step.optim_wrapper_cfg(cfg, 'none', 'cpu')
    assert fp32['type'] == 'OptimWrapper' and 'accumulative_counts' not in fp32
    assert fp32['paramwise_cfg'] == cfg.optim_wrapper.paramwise_cfg
    for amp, dtype in (('fp16', 'float16'), ('bf16', 'bfloat16')):
        gpu = step.optim_wrapper_cfg(cfg, amp, 'cuda')
        assert gpu['type'] == 'AmpOptimWrapper' and gpu['dtype'] == dtype
        assert gpu['loss_scale'] == 'dynamic'
    # bf16 on a CPU: a plain wrapper, mmengine's CPU autocast around the
    # forward; nothing extra elsewhere
    cpu_bf16 = step.optim_wrapper_cfg(cfg, 'bf16', 'cpu')
    assert cpu_bf16['type'] == 'OptimWrapper' and 'dtype' not in cpu_bf16
    with step.autocast_context('bf16', 'cpu')():
        assert torch.is_autocast_enabled('cpu')
        assert torch.get_autocast_dtype('cpu') == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with step.autocast_context('bf16', 'cuda')():
        assert not torch.is_autocast_enabled('cpu')
    with pytest.raises(ValueError, match='--amp fp16 needs --device cuda'):
        step.optim_wrapper_cfg(cfg, 'fp16', 'cpu')
    with pytest.raises(SystemExit):
        bench.parse_args(['--amp', 'fp16'])  # --device cpu
    with pytest.raises(SystemExit):
        bench.parse_args(['--amp', 'fp32'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--steps', '0'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--model', 'resnet-50'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--compile', '--warmup', '0'])
    args = bench.parse_args(['--max-batch'])
    assert args.max_batch_limit == 64 and args.max_batch_rss_gib > 0
    assert bench.parse_args(['--device', 'cuda', '--amp', 'fp16'
                             ]).max_batch_limit == 16384


def test_find_max_batch_doubles_then_bisects(bench):
    from pretrain_bench.maxbatch import find_max_batch
    seen = []

    def upto(k):
        def fits(n):
            seen.append(n)
            return n <= k
        return fits

    best, info = find_max_batch(upto(37), start=4, limit=1000)
    assert best == 37 and info['exact'] and not info['capped']
    assert seen == [4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    assert info['trials'] == [[n, n <= 37] for n in seen]
    assert info['first_failure'] == 64
    # granularity: multiples of 8 only
    seen.clear()
    best, info = find_max_batch(upto(37), start=8, limit=1000, step=8)
    assert best == 32 and seen == [8, 16, 32, 64, 48, 40]
    # the limit fits: capped there, never beyond
    seen.clear()
    best, info = find_max_batch(upto(10**6), start=16, limit=100)
    assert (best, info['capped']) == (100, True)
    assert seen == [16, 32, 64, 100]
    # the start does not fit: bisect below it
    seen.clear()
    assert find_max_batch(upto(5), start=16, limit=64)[0] == 5
    assert seen == [16, 8, 4, 6, 5]
    best, info = find_max_batch(upto(0), start=4, limit=64)
    assert best == 0 and info['first_failure'] == 4
    # a deadline already past: no trial, nothing claimed
    best, info = find_max_batch(upto(50), start=4, limit=64, deadline=0.0)
    assert best == 0 and info['trials'] == [] and not info['exact']
    # any threshold, start, step: the largest fitting multiple of step
    for k in range(0, 130, 7):
        for start in (1, 3, 16, 200):
            for step in (1, 3, 8):
                best, _ = find_max_batch(lambda n: n <= k, start, 120, step)
                assert best == min(k, 120) // step * step, (k, start, step)
    with pytest.raises(ValueError, match='must be >= 1'):
        find_max_batch(upto(5), start=0, limit=8)
    with pytest.raises(ValueError, match='smaller than'):
        find_max_batch(upto(5), start=1, limit=4, step=8)


def test_rounds_pool_the_timed_steps(bench):
    from pretrain_bench import step
    one = dict(status='ok', batch_size=8, peak_mem_bytes=5,
               peak_mem_above_baseline_bytes=2,
               **step.step_stats([1.0, 3.0], [2.0, 2.0]))
    two = dict(one, peak_mem_bytes=7, peak_mem_above_baseline_bytes=1,
               **step.step_stats([2.0, 10.0, 4.0], [1.0, 3.0, 5.0]))
    merged = step.merge_rounds([one, two])
    assert merged['step_times_s'] == [1.0, 3.0, 2.0, 10.0, 4.0]
    stats = (merged['min_s'], merged['median_s'], merged['max_s'])
    assert stats == (1.0, 3.0, 10.0)
    assert merged['median_cpu_s'] == 2.0
    assert merged['images_per_s'] == 8 / 3.0
    assert merged['round_medians_s'] == [2.0, 4.0] and merged['rounds'] == 2
    assert merged['peak_mem_bytes'] == 7
    assert merged['peak_mem_above_baseline_bytes'] == 2
    failed = dict(status='failed', reason='x')
    assert step.merge_rounds([one, failed]) is failed
    with pytest.raises(SystemExit):
        bench.parse_args(['--rounds', '0'])


def test_compiled_bf16_step_on_cpu(bench, tmp_path):
    """UM-MAE (tiny Swin) with bf16 autocast on the CPU and torch.compile
    of its parts (dynamo's tracing with the eager backend: the same graphs
    inductor would compile, without the C++ build that takes minutes on
    this machine; gpu_check.sh's rehearsal runs inductor)."""
    import torch
    threads = torch.get_num_threads()
    try:
        report = bench.main([
            '--model', 'swin-t', '--variants', 'ummae', '--img-size', '64',
            '--batch-size', '2', '--steps', '2', '--warmup', '1',
            '--threads', '1', '--no-subprocess', '--amp', 'bf16',
            '--compile', '--compile-backend', 'eager', '--no-flops',
            '--out-dir', str(tmp_path), '--cfg-options', SWIN,
            'model.neck.in_channels=256', *TINY_DECODER])
    finally:
        torch.set_num_threads(threads)
    r = report['results'][0]
    _check_stats_no_flops(r, 2)
    line = json.loads((tmp_path / 'results.jsonl').read_text())
    assert line['variant'] == 'ummae' and line['median_s'] == r['median_s']
    assert r['amp'] == 'bf16' and r['compile'] is True
    assert r['optimizer']['wrapper'] == 'OptimWrapper'
    assert r['compiled_parts'] == ['backbone', 'neck', 'head.loss']
    assert r['compile_cfg'] == dict(backend='eager', mode=None,
                                    fullgraph=False, scope='parts')
    assert r['unique_graphs'] >= 3  # at least one graph per part
    assert r['graph_breaks'] == sum(r['graph_break_reasons'].values())
    assert r['first_step_s'] > r['max_s']  # the step that compiled
    assert 'compile swin-t/ummae: backbone, neck, head.loss' in \
        report['table']


def test_max_batch_real_steps(bench, tmp_path):
    """The search with real training steps on the CPU: under a generous
    RSS bound, 2 -> 4 -> 8 = the limit all fit (capped); under a bound
    below what any step takes nothing fits (0) and each trial says why."""
    common = ['--model', 'pvt-s', '--variants', 'ummae', '--img-size', '64',
              '--steps', '1', '--warmup', '0', '--threads', '1',
              '--no-subprocess', '--no-flops', '--max-batch',
              '--cfg-options', PVT, 'model.neck.in_channels=128',
              *TINY_DECODER]
    report = bench.main(['--batch-size', '2', '--max-batch-limit', '8',
                         '--max-batch-rss-gib', '20', '--out-dir',
                         str(tmp_path / 'a'), *common])
    r = report['results'][0]
    found = r['max_batch']
    assert found['trials'] == [[2, True], [4, True], [8, True]]
    assert (found['max_batch'], found['capped']) == (8, True)
    assert [e['batch'] for e in found['log']] == [2, 4, 8]
    assert all(2**20 < e['peak_mem_bytes'] < 20 * 2**30
               for e in found['log'])
    assert found['peak_mem_bytes'] == found['log'][-1]['peak_mem_bytes']
    assert 'max batch pvt-s/ummae: 8 (capped by the limit)' in \
        report['table']
    report = bench.main(['--batch-size', '4', '--max-batch-rss-gib', '0.01',
                         '--out-dir', str(tmp_path / 'b'), *common])
    found = report['results'][0]['max_batch']
    assert found['max_batch'] == 0 and found['first_failure'] == 4
    assert found['trials'] == [[4, False], [2, False], [1, False]]
    assert all('peak RSS' in e['reason'] and '> 0.01 GiB' in e['reason']
               for e in found['log'])


def test_time_budget_skips(bench, tmp_path):
    report = bench.main(['--model', 'swin-t', 'pvt-s', '--time-budget', '0',
                         '--out-dir', str(tmp_path)])
    assert [r['status'] for r in report['results']] == ['skipped'] * 5
    assert all('time budget' in r['reason'] for r in report['results'])


def _gpu_check():
    spec = importlib.util.spec_from_file_location(
        'gpu_check', TOOL.parent / 'pretrain_bench' / 'gpu_check.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_phases_and_tables(bench, swin_report, tmp_path):
    """gpu_check.py's phases are valid tool command lines, and its tables
    and targets are the tool's results (the Swin run above, filed as a
    bf16 eager phase) and the issue's limits."""
    gc = _gpu_check()
    for quick in (False, True):
        for name in gc.PHASES:
            for argv in gc.phase_args(name, 'cuda', quick, 128, 32,
                                      'inductor'):
                args = bench.parse_args(argv)
                assert args.amp == name.split('-')[1]
                assert args.compile == name.startswith('compile')
                assert args.max_batch == ('maxbatch' in name
                                          or name.startswith('eager'))
                assert args.profile == (name == 'eager-bf16')
                assert args.variants == ['ummae', 'simmim']
                assert args.compile_scope == ('blocks' if args.compile
                                              else 'parts')
    assert bench.parse_args(gc.phase_args('compile-bf16', 'cuda', False,
                                          128, 32, 'inductor')[0]
                            ).model == ['swin-t', 'pvt-s']
    phases = gc.run_phases(str(tmp_path / 'skip'), ['eager-fp16'], 'cpu',
                           True, 100.0, 2, 1, 'inductor')
    assert {p['status'] for p in phases} == {'skipped'}
    assert 'fp16 needs CUDA' in phases[0]['reason']
    # the Swin run's results as the eager-bf16 phase of a check
    report, out = swin_report
    raw = tmp_path / 'raw' / 'eager-bf16.0'
    raw.mkdir(parents=True)
    lines = [dict(json.loads(ln), amp='bf16') for ln in
             (out / 'results.jsonl').read_text().splitlines()]
    assert [ln['variant'] for ln in lines] == ['ummae', 'simmim',
                                               'simmim-stock']
    (raw / 'results.jsonl').write_text(
        ''.join(json.dumps(ln) + '\n' for ln in lines))
    summary = gc.write_outputs(str(tmp_path / 'raw'), str(tmp_path / 'out'),
                               dict(phases=[], wall_s=1.0, budget=2.0))
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'gpu_check.md', 'profiles.txt', 'raw.tar.gz', 'results.json']
    um, sm = lines[0], lines[1]
    goal = next(g for g in summary['targets'] if g['model'] == 'swin-t'
                and g['amp'] == 'bf16' and not g['compile'])
    assert goal['time_ratio'] == pytest.approx(um['median_s'] /
                                               sm['median_s'])
    assert goal['memory_ratio'] == pytest.approx(um['peak_mem_bytes'] /
                                                 sm['peak_mem_bytes'])
    assert goal['time_met'] == (goal['time_ratio'] <= 0.45)
    assert goal['memory_met'] == (goal['memory_ratio'] <= 0.40)
    assert goal['rate'] == um['images_per_s']
    assert goal['rate_limit'] == pytest.approx(2 * 1281167 * 200 /
                                               (25.0 * 3600 * 8))
    others = [g for g in summary['targets'] if g is not goal]
    assert all(g['time_ratio'] is None for g in others)
    md = (tmp_path / 'out' / 'gpu_check.md').read_text()
    row = (f'| swin-t | ummae | bf16 | no | 64 | 8 | '
           f'{um["median_s"] * 1e3:.1f} | {um["images_per_s"]:.1f} | ')
    assert row in md
    assert f'| swin-t | bf16 | no | {goal["time_ratio"]:.3f} | <= 0.45' in md
    assert 'not measured' in md  # the fp16 and compiled rows


def test_compile_scope_blocks_selects_the_repeated_blocks(bench):
    """Regional compilation: every block of every stage and of the
    decoder, nothing between them; a part without blocks (SimMIM's linear
    decoder) whole. Compiling is lazy: nothing runs here."""
    import torch
    from pretrain_bench import step, variants
    tiny = {'model.backbone.arch': {'embed_dims': 32, 'depths': [1, 2, 1, 1],
                                    'num_heads': [1, 2, 4, 8]},
            'model.neck.in_channels': 256}
    names = {}
    for variant in ('ummae', 'simmim'):
        path, _, _ = variants.variant_spec('swin-t', variant)
        extra = {'model.neck.embed_dims': 32, 'model.neck.depth': 2,
                 'model.neck.num_heads': 2} if variant == 'ummae' else {}
        cfg = variants.load_variant(path, dict(tiny, **extra), 64)
        model, _, _ = step.build(cfg, 'none', torch.device('cpu'))
        names[variant] = step.compile_parts(model, backend='eager',
                                            scope='blocks')
        with pytest.raises(ValueError, match='use parts or blocks'):
            step.compile_parts(model, scope='layers')
    stages = ['backbone.stages.0.blocks.0', 'backbone.stages.1.blocks.0',
              'backbone.stages.1.blocks.1', 'backbone.stages.2.blocks.0',
              'backbone.stages.3.blocks.0']
    assert names['ummae'] == stages + ['neck.decoder_blocks.0',
                                       'neck.decoder_blocks.1', 'head.loss']
    assert names['simmim'] == stages + ['neck', 'head.loss']
