"""The pre-training benchmark (:mod:`mmumae_tools.benchmark`) on tiny
versions of the configs: real models and optimizer wrappers from
``configs/``, tiny archs through ``--cfg-options``, 64 px, 1-2 steps, one
thread. The tests check what the output shows, not how fast it is."""
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmumae_tools.benchmark import cli, gpu, step

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'tools' / 'analysis_tools' / 'benchmark_pretrain.py'
SWIN = ["model.backbone.arch={'embed_dims': 32, 'depths': [1, 1, 1, 1], "
        "'num_heads': [1, 2, 4, 8]}", 'model.neck.in_channels=256']
PVT = ["model.backbone.arch={'embed_dims': [16, 32, 64, 128], 'depths': "
       "[1, 1, 1, 1], 'num_heads': [1, 1, 2, 4], 'mlp_ratios': [2, 2, 2, 2]}",
       'model.neck.in_channels=128']
DECODER = ['ummae:model.neck.embed_dims=32', 'ummae:model.neck.depth=1',
           'ummae:model.neck.num_heads=2']
# mmpretrain's Swin refuses a window larger than the map (ours shrinks it)
STOCK = ('simmim-stock:model.backbone.stage_cfgs=[' + ', '.join(
    f"{{'block_cfgs': {{'window_size': {w}}}}}" for w in (16, 8, 4, 2)) + ']')
TINY = ['--img-size', '64', '--threads', '1', '--no-subprocess']


def _main(argv):
    """``cli.main`` without changing the test process's torch threads."""
    threads = torch.get_num_threads()
    try:
        return cli.main(argv)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def swin(tmp_path_factory):
    out = tmp_path_factory.mktemp('swin')
    return _main(['--model', 'swin-t', *TINY, '--steps', '2', '--warmup',
                  '0', '--out-dir', str(out), '--cfg-options', *SWIN, STOCK,
                  *DECODER]), out


def _check_stats(r: dict, steps: int) -> None:
    assert r['status'] == 'ok', r
    times = r['step_times_s']
    assert len(times) == steps == len(r['step_cpu_times_s'])
    assert r['min_s'] == min(times) and r['max_s'] == max(times)
    assert r['median_s'] == statistics.median(times)
    assert r['images_per_s'] == pytest.approx(r['batch_size'] / r['median_s'])
    assert math.isfinite(r['loss']) and r['peak_mem_bytes'] > 2**20


def test_swin_table_has_numbers_for_every_variant(swin):
    """The table the run prints has a row of numbers per variant and the
    ratios; the variants are the configs' models with their masks."""
    report, out = swin
    assert json.loads((out / 'benchmark.json').read_text())['results'] == \
        json.loads(json.dumps(report['results']))
    assert report['command'].startswith(
        'python tools/analysis_tools/benchmark_pretrain.py --model swin-t')
    assert 'AMD' in report['machine'] or 'cores' in report['machine']
    res = {r['variant']: r for r in report['results']}
    assert list(res) == ['ummae', 'simmim', 'simmim-stock']
    rows = report['table'].splitlines()
    for r in res.values():
        _check_stats(r, 2)
        assert (REPO / r['config']).is_file() and r['img_size'] == 64
        row = next(ln for ln in rows
                   if ln.startswith(f'| swin-t | {r["variant"]} |'))
        assert f'| {r["min_s"]:.3f} | {r["median_s"]:.3f} |' in row
    assert [r['config'].split('/')[-1].split('_8xb')[0] for r in
            res.values()] == ['ummae_swin-tiny-w8', 'simmim_swin-tiny-w16',
                              'simmim_stock-swin-tiny-w16']
    assert [r['mask'] for r in res.values()] == [
        'UniformMaskGenerator', 'RandomPatchMaskGenerator',
        'SimMIMMaskGenerator']
    ratios = {r['ratio']: r for r in report['ratios']}
    assert list(ratios) == ['ummae/simmim', 'ummae/simmim-stock',
                            'simmim/simmim-stock']
    um, sm = res['ummae'], res['simmim']
    assert ratios['ummae/simmim']['median_s'] == pytest.approx(
        um['median_s'] / sm['median_s'])
    assert '| swin-t | none | no | ummae/simmim | ' in report['table']


def test_swin_flops_follow_the_geometry(swin):
    """Compact grid: 1/4 of the tokens in every linear layer; window 8 on
    it against 16 on the full grid: 1/16 of the window-attention products;
    our SimMIM and mmpretrain's count the same."""
    res = {r['variant']: r['flops_by_module']['backbone']
           for r in swin[0]['results']}
    um, sm, stock = res['ummae'], res['simmim'], res['simmim-stock']
    assert um['addmm'] / sm['addmm'] == pytest.approx(0.25, rel=1e-6)
    assert um['bmm'] / sm['bmm'] == pytest.approx(1 / 16, rel=1e-6)
    assert (sm['addmm'], sm['bmm']) == (stock['addmm'], stock['bmm'])


def test_script_runs_a_variant_in_a_worker(tmp_path):
    """The script, with no path set up: the variant in a fresh worker
    process (its own peak memory), one torch thread on a CPU."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), '--model', 'pvt-s', '--variants',
         'ummae', '--img-size', '64', '--steps', '1', '--warmup', '0',
         '--out-dir', str(tmp_path), '--cfg-options', *PVT, *DECODER],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / 'benchmark.json').read_text())['results'][0]
    _check_stats(r, 1)
    assert r['threads'] == 1 and r['peak_above_base_bytes'] > 0
    assert f'| pvt-s | ummae | none | no | 64 | 8 | {r["min_s"]:.3f} |' in \
        proc.stdout


def test_options_and_configs():
    """``--cfg-options`` literals and per-variant prefixes; ``--img-size``
    reaches the mask generator and the backbone."""
    args = cli.parse_args(['--cfg-options', "x={'k': [1, 2]}", 'y=1,2',
                           'z=abc', 'ummae:w=3'])
    assert args.cfg_options == {'x': {'k': [1, 2]}, 'y': [1, 2], 'z': 'abc',
                                'ummae:w': 3}
    cfg = step.load_variant('swin-t', 'simmim-stock', {
        'ummae:model.backbone.arch': 'large'}, img_size=128)
    assert cfg.model.backbone.img_size == 128
    assert cfg.model.backbone.arch != 'large'
    assert [t['input_size'] for t in cfg.train_dataloader.dataset.pipeline
            if 'input_size' in t] == [128]
    assert step.load_variant('swin-l', 'simmim', {}).model.backbone.arch == \
        'large'


@pytest.mark.parametrize('argv, message', [
    (['--amp', 'fp16'], '--amp fp16 needs --device cuda'),
    (['--compile', '--warmup', '0'], 'the first step compiles'),
    (['--steps', '0'], 'must be >= 1'),
    (['--cfg-options', 'umame:a=1'], 'no variant umame'),
    (['--model', 'resnet-50'], 'invalid choice')])
def test_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and message in err, err


def test_optim_wrapper_per_amp():
    """The config's AdamW wrapper at the benchmark's precision: AMP on
    CUDA, a plain wrapper on a CPU (bf16 autocasts), fp16 on a CPU refused."""
    cfg = step.load_variant('swin-t', 'simmim', {})
    assert cfg.optim_wrapper.accumulative_counts == 8
    fp32 = step.optim_wrapper_cfg(cfg, 'none', 'cpu')
    assert fp32['type'] == 'OptimWrapper' and 'accumulative_counts' not in fp32
    assert fp32['paramwise_cfg'] == cfg.optim_wrapper.paramwise_cfg
    for amp, dtype in (('fp16', 'float16'), ('bf16', 'bfloat16')):
        wrapper = step.optim_wrapper_cfg(cfg, amp, 'cuda')
        assert (wrapper['type'], wrapper['dtype']) == ('AmpOptimWrapper',
                                                       dtype)
    assert step.optim_wrapper_cfg(cfg, 'bf16', 'cpu')['type'] == \
        'OptimWrapper'
    with pytest.raises(ValueError, match='fp16 needs --device cuda'):
        step.optim_wrapper_cfg(cfg, 'fp16', 'cpu')


def test_find_max_batch_doubles_then_bisects():
    seen = []

    def upto(k):
        return lambda n: seen.append(n) or n <= k

    assert step.find_max_batch(upto(37), 4, 1000)[0] == 37
    assert seen == [4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    seen.clear()
    assert step.find_max_batch(upto(37), 8, 1000, step=8)[0] == 32
    assert seen == [8, 16, 32, 64, 48, 40]
    best, trials = step.find_max_batch(upto(10**6), 16, 100)
    assert best == 100 and [n for n, _ in trials] == [16, 32, 64, 100]
    assert step.find_max_batch(upto(0), 4, 64)[0] == 0
    for k in range(0, 130, 7):
        for start in (1, 3, 16, 200):
            for n in (1, 3, 8):
                best, _ = step.find_max_batch(lambda b: b <= k, start, 120, n)
                assert best == min(k, 120) // n * n, (k, start, n)
    with pytest.raises(ValueError, match='step <= limit'):
        step.find_max_batch(upto(5), 1, 4, step=8)


def test_max_batch_with_real_steps(tmp_path):
    """The search with real training steps: under a generous RSS bound the
    limit fits; under one below any step's peak nothing does."""
    common = ['--model', 'pvt-s', '--variants', 'ummae', *TINY, '--steps',
              '1', '--warmup', '0', '--no-flops', '--max-batch',
              '--batch-size', '2', '--max-batch-limit', '8', '--cfg-options',
              *PVT, *DECODER]
    r = _main([*common, '--max-batch-rss-gib', '20', '--out-dir',
               str(tmp_path / 'a')])['results'][0]
    assert r['max_batch_trials'] == [[2, True], [4, True], [8, True]]
    assert (r['max_batch'], r['max_batch_capped']) == (8, True)
    r = _main([*common, '--max-batch-rss-gib', '0.01', '--out-dir',
               str(tmp_path / 'b')])['results'][0]
    assert r['max_batch'] == 0
    assert r['max_batch_trials'] == [[2, False], [1, False]]


def test_compile_reports_graph_breaks(tmp_path):
    """UM-MAE (tiny Swin) in bf16 on the CPU with ``torch.compile`` of its
    parts (dynamo with the eager backend: inductor's graphs, no C++
    build): graphs and graph breaks counted, the first step compiles."""
    report = _main(['--model', 'swin-t', '--variants', 'ummae', *TINY,
                    '--batch-size', '2', '--steps', '2', '--warmup', '1',
                    '--amp', 'bf16', '--compile', '--compile-backend',
                    'eager', '--no-flops', '--out-dir', str(tmp_path),
                    '--cfg-options', *SWIN, *DECODER])
    r = report['results'][0]
    _check_stats(r, 2)
    assert r['compiled'] == ['backbone', 'neck', 'head.loss']
    assert r['graphs'] >= 3 and r['first_step_s'] > r['max_s']
    assert r['graph_breaks'] == sum(r['graph_break_reasons'].values())
    assert f'| {r["graph_breaks"]} |' in report['table'].splitlines()[2]


def test_compile_scope_blocks_selects_the_repeated_blocks():
    """Regional compilation: each block of each stage and of the decoder;
    a part without blocks (SimMIM's linear decoder) whole. Lazy: nothing
    is compiled here."""
    from mmpretrain.registry import MODELS
    arch = {'model.backbone.arch': {'embed_dims': 32, 'depths': [1, 2, 1, 1],
                                    'num_heads': [1, 2, 4, 8]},
            'model.neck.in_channels': 256, 'ummae:model.neck.embed_dims': 32,
            'ummae:model.neck.num_heads': 2}
    names = {}
    for variant in ('ummae', 'simmim'):
        cfg = step.load_variant('swin-t', variant, arch, 64)
        names[variant] = step.compile_parts(MODELS.build(cfg.model),
                                            backend='eager', scope='blocks')
    stages = ['backbone.stages.0.blocks.0', 'backbone.stages.1.blocks.0',
              'backbone.stages.1.blocks.1', 'backbone.stages.2.blocks.0',
              'backbone.stages.3.blocks.0']
    assert names['ummae'] == stages + ['neck.decoder_blocks.0',
                                       'neck.decoder_blocks.1', 'head.loss']
    assert names['simmim'] == stages + ['neck', 'head.loss']


def test_rounds_pool_the_timed_steps():
    one = dict(status='ok', batch_size=8, peak_mem_bytes=5,
               step_times_s=[1.0, 3.0], step_cpu_times_s=[2.0, 2.0])
    two = dict(one, peak_mem_bytes=7, step_times_s=[2.0, 10.0, 4.0],
               step_cpu_times_s=[1.0, 3.0, 5.0])
    merged = cli.merge([one, two])
    assert merged['step_times_s'] == [1.0, 3.0, 2.0, 10.0, 4.0]
    assert (merged['min_s'], merged['median_s'], merged['max_s']) == (
        1.0, 3.0, 10.0)
    assert (merged['median_cpu_s'], merged['peak_mem_bytes']) == (2.0, 7)
    failed = dict(status='failed', reason='x')
    assert cli.merge([one, failed]) is failed


def test_gpu_benchmark_runs_and_tables(tmp_path):
    """The GPU benchmark's runs are valid command lines; rehearsed on the
    CPU (a tiny PVT, arguments after ``--``), it writes its tables, and a
    run the CPU refuses (fp16) is one line of the notes."""
    for name in gpu.RUNS:
        parsed = cli.parse_args(gpu.run_argv(name, 'out', []))
        assert (parsed.amp, parsed.compile) == (
            name.split('-')[1], name.startswith('compile'))
        assert parsed.max_batch and parsed.device == 'cuda'
        assert parsed.profile == (name == 'eager-bf16')
    md = gpu.main(['--out-dir', str(tmp_path), '--runs', 'eager-bf16',
                   'eager-fp16', '--', '--device', 'cpu', '--model', 'pvt-s',
                   *TINY, '--batch-size', '2', '--steps', '1', '--warmup',
                   '1', '--max-batch-limit', '2', '--max-batch-step', '1',
                   '--cfg-options', *PVT, *DECODER])
    assert (tmp_path / 'gpu_benchmark.md').read_text() == md
    assert md.count('| pvt-s | ummae | bf16 | no | 64 | 2 |') == 1
    assert '| pvt-s | bf16 | no | ummae/simmim |' in md
    assert 'Profile of one pvt-s/ummae step' in md
    assert '- eager-fp16: not run: ' in md
