"""Smoke tests of tools/analysis_tools/benchmark_pretrain.py on tiny models.

The tool is run for real (model build, timed AdamW steps, FLOP count, JSON
and PNG) on the hidden ``swin-tiny-test`` / ``pvt-tiny-test`` models at
64 px, so the whole file takes well under a minute on two CPU cores.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'analysis_tools' / 'benchmark_pretrain.py'


def _load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_pretrain', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def bench():
    return _load_tool()


def _check_ok(result: dict, steps: int) -> None:
    assert result['status'] == 'ok', result
    assert len(result['step_times_s']) == steps
    assert all(t > 0 for t in result['step_times_s'])
    assert result['min_s'] <= result['median_s'] <= result['max_s']
    assert result['images_per_s'] > 0
    assert result['peak_mem_bytes'] > 0
    assert result['flops_per_image'] > 0
    assert result['params'] > 0
    assert result['loss_last'] == result['loss_last']  # finite, not NaN


def test_swin_tiny_in_process(bench, tmp_path):
    import torch
    out = tmp_path / 'bench'
    threads = torch.get_num_threads()
    try:
        # One thread: on a loaded 2-core machine more threads make these
        # millisecond steps ten times slower.
        report = bench.main([
            '--model', 'swin-tiny-test', '--steps', '2', '--warmup', '0',
            '--threads', '1', '--no-subprocess', '--out-dir',
            str(out)
        ])
    finally:
        torch.set_num_threads(threads)
    assert (out / 'benchmark.png').stat().st_size > 1000
    on_disk = json.loads((out / 'benchmark.json').read_text())
    assert on_disk['command'].startswith('python ')
    assert '--model swin-tiny-test' in on_disk['command']
    for key in ('cpu_model', 'cpu_cores', 'torch', 'torch_threads',
                'device_name'):
        assert on_disk['machine'][key], key

    results = {r['variant']: r for r in report['results']}
    assert set(results) == {'ummae', 'simmim', 'simmim-stock'}
    for r in results.values():
        _check_ok(r, 2)
        assert r['img_size'] == 64 and r['batch_size'] == 8
        assert 'not isolated' in r['peak_mem_kind']
    # UM-MAE's encoder sees a quarter of the tokens.
    assert (results['ummae']['flops_per_image'] <
            results['simmim']['flops_per_image'])
    # Same backbone class for UM-MAE and SimMIM, stock Swin for the other.
    assert results['ummae']['config']['backbone']['type'] == \
        results['simmim']['config']['backbone']['type'] == 'UMSwinTransformer'
    assert results['simmim-stock']['config']['backbone']['type'] == \
        'SimMIMSwinTransformer'

    ratios = report['ratios']
    main_ratio = ratios['swin-tiny-test: ummae/simmim']
    for key in ('time', 'memory', 'flops'):
        assert 0 < main_ratio[key] < 10, (key, main_ratio)
    assert main_ratio['flops'] < 1
    assert 'swin-tiny-test: simmim/simmim-stock' in ratios
    assert on_disk['ratios'] == json.loads(json.dumps(ratios))
    assert 'ummae/simmim' in report['table']


def test_pvt_tiny_subprocess(tmp_path):
    """Default mode: one fresh worker process per variant (isolated RSS)."""
    out = tmp_path / 'bench'
    proc = subprocess.run([
        sys.executable,
        str(TOOL), '--model', 'pvt-tiny-test', '--steps', '1', '--warmup',
        '0', '--threads', '1', '--out-dir',
        str(out)
    ],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'pvt-tiny-test: ummae/simmim' in proc.stdout
    report = json.loads((out / 'benchmark.json').read_text())
    assert (out / 'benchmark.png').exists()
    results = {r['variant']: r for r in report['results']}
    assert set(results) == {'ummae', 'simmim'}  # no stock SimMIM for PVT
    for r in results.values():
        _check_ok(r, 1)
        assert r['peak_mem_kind'] == 'peak RSS of a fresh process'
        assert r['threads'] == 1
        assert r['config']['backbone']['type'] == 'UMPVT'
    assert (results['ummae']['flops_per_image'] <
            results['simmim']['flops_per_image'])
    ratio = report['ratios']['pvt-tiny-test: ummae/simmim']
    for key in ('time', 'memory', 'flops'):
        assert 0 < ratio[key] < 10, (key, ratio)


def test_missing_class_is_skipped(bench, monkeypatch):
    """A variant whose class is not registered is skipped with a reason."""
    from mmpretrain.registry import MODELS
    real_get = MODELS.get

    def fake_get(name):
        return None if name == 'UMMAEViT' else real_get(name)

    monkeypatch.setattr(MODELS, 'get', fake_get)
    cfg, _, reason = bench.variant_config('vit-b', 'ummae', 224)
    assert cfg is None
    assert 'UMMAEViT is not registered' in reason
    cfg, kind, reason = bench.variant_config('vit-b', 'mae', 224)
    assert reason is None and cfg['type'] == 'MAE' and kind == 'none'
    # Variants a model does not define are skipped too, with the reason.
    cfg, _, reason = bench.variant_config('pvt-s', 'simmim-stock', 256)
    assert cfg is None and 'Swin only' in reason


def test_stock_swin_window_config(bench):
    """The reference SimMIM uses mmpretrain's Swin with window 8."""
    cfg, kind, _ = bench.variant_config('swin-t', 'simmim-stock', 256)
    assert kind == 'simmim-token'
    assert cfg['backbone'] == dict(
        type='SimMIMSwinTransformer', arch='T', img_size=256,
        stage_cfgs=dict(block_cfgs=dict(window_size=8)))
    assert cfg['head']['patch_size'] == 4
    cfg, kind, _ = bench.variant_config('swin-l', 'ummae', 256)
    assert cfg['neck']['in_channels'] == 1536 and cfg['neck']['depth'] == 8
    assert kind == 'um'


def test_bad_arguments(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(['--model', 'resnet-50'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--steps', '0'])


def test_compile_failure_falls_back_to_eager(bench, tmp_path, monkeypatch):
    import torch

    def broken_compile(fn, *args, **kwargs):

        def run(*a, **k):
            raise RuntimeError('no compiler here')

        return run

    monkeypatch.setattr(torch, 'compile', broken_compile)
    threads = torch.get_num_threads()
    try:
        report = bench.main([
            '--model', 'swin-tiny-test', '--variants', 'ummae', '--steps',
            '1', '--warmup', '1', '--threads', '1', '--compile',
            '--no-subprocess', '--out-dir',
            str(tmp_path)
        ])
    finally:
        torch.set_num_threads(threads)
    (result, ) = report['results']
    _check_ok(result, 1)
    assert result['compiled'] is False
    assert any('falling back to eager' in n for n in result['notes'])
