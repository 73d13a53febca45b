"""Export of stock-Swin checkpoints to timm and transformers
(``mmumae_tools.export``, ``tools/model_converters/ummae_to_{timm,hf}.py``),
and mmpretrain's own Swin loading a checkpoint converted for its window
(``ummae_to_backbone.py --window-size``).

Each export is loaded the way its library loads weights (timm:
``create_model`` + ``load_state_dict(strict=True)``; transformers:
``SwinModel.from_pretrained`` reporting no missing, unexpected or
mis-shaped key) and compared with our backbone, built from the shipped
configs at the same window and image size, on the same images.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import save_checkpoint
from mmpretrain.registry import MODELS
from safetensors import safe_open
from safetensors.torch import load_file
from timm.layers import resize_rel_pos_bias_table
from tool_helpers import load_tool
from transformers import SwinModel

import mmumae  # noqa: F401
from mmumae_tools.export import ExportError, export_hf, export_timm

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools' / 'model_converters'
DEMO = REPO / 'configs/ummae/ummae_stock-swin-mini_demo.py'
PAPER = REPO / ('configs/ummae/ummae_stock-swin-tiny-w8_8xb512-amp-coslr-'
                '200e_in1k-256px.py')
REFERENCE = REPO / 'configs/ummae/ummae_swin-mini_demo.py'
TABLE = 'relative_position_bias_table'
TOL = dict(rtol=1e-4, atol=1e-4)
to_timm = load_tool(TOOLS / 'ummae_to_timm.py', 'ummae_to_timm')
to_hf = load_tool(TOOLS / 'ummae_to_hf.py', 'ummae_to_hf')
to_backbone = load_tool(TOOLS / 'ummae_to_backbone.py', 'ummae_to_backbone')


def pretrained(config: Path, path: Path, classes: int = 0) -> dict:
    """The config's backbone moved off its init, saved as the Runner saves
    a checkpoint (config in meta); ``classes`` adds a classifier head."""
    cfg = Config.fromfile(str(config))
    backbone = MODELS.build(cfg.model.backbone)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for v in backbone.state_dict().values():
            if v.is_floating_point():
                v.add_(0.05 * torch.randn(v.shape, generator=gen))
    state = {'backbone.' + k: v for k, v in backbone.state_dict().items()}
    if classes:
        dims = backbone.embed_dims * 2**(len(backbone.depths) - 1)
        state['head.fc.weight'] = torch.randn(classes, dims, generator=gen)
        state['head.fc.bias'] = torch.randn(classes, generator=gen)
    save_checkpoint(dict(meta=dict(cfg=cfg.pretty_text), state_dict=state),
                    str(path))
    return state


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp('export') / 'demo.pth'
    return str(path), pretrained(DEMO, path)


@pytest.fixture(scope='module')
def swin_t(tmp_path_factory):
    path = tmp_path_factory.mktemp('export') / 'swin_t.pth'
    return str(path), pretrained(PAPER, path)


def ours(config: Path, state: dict, img: int, windows, tables: dict):
    """Our backbone from ``config`` at ``img`` px and per-stage
    ``windows`` (``--cfg-options``-style overrides), holding ``state`` with
    the bias tables ``tables`` (stock key -> table)."""
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict({
        'model.backbone.img_size': img,
        'model.backbone.window_size': max(windows),
        'model.backbone.out_indices': (3, ),
        'model.backbone.stage_cfgs': [
            dict(block_cfgs=dict(window_size=w)) for w in windows]})
    model = MODELS.build(cfg.model.backbone)
    own = model.state_dict()
    new = {k: tables.get(k, state.get('backbone.' + k)) for k in own}
    new.update({k: v for k, v in own.items()
                if k.endswith('relative_position_index')})
    model.load_state_dict(new, strict=True)
    model.eval()
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    torch.testing.assert_close(a, b, **TOL)
    return (a - b).abs().max().item()


# ------------------------------------------ mmpretrain at another window
def reference_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """The pre-trained bias of every offset of a ``window`` table: read at
    the same offset for a smaller window, bicubic resize of the whole table
    for a larger one (as mmdet's and mmseg's Swin loaders resize)."""
    side, heads = round(table.shape[0]**.5), table.shape[1]
    r, new = side // 2, 2 * window - 1
    if window - 1 > r:
        grid = table.T.reshape(1, heads, side, side)
        return torch.nn.functional.interpolate(
            grid, size=(new, new), mode='bicubic',
            align_corners=False)[0].reshape(heads, -1).T
    d = torch.arange(-(window - 1), window)
    dy, dx = torch.meshgrid(d, d, indexing='ij')  # row-major offsets
    return table[((dy + r) * side + dx + r).flatten()]


@pytest.mark.parametrize('window', [7, 12, 20])
def test_mmpretrain_swin_loads_converted_checkpoint(swin_t, tmp_path,
                                                    window):
    """mmpretrain's own SwinTransformer(arch='tiny', window_size=W) loads a
    Swin-T checkpoint converted with --window-size W through its init_cfg:
    nothing missing or unexpected, and no resize of its own (which calls
    SciPy's removed interp2d); each table is the reference resize of the
    pre-trained window-16 one, every other tensor the pre-trained one."""
    src, state = swin_t
    out = tmp_path / f'w{window}.pth'
    to_backbone.main([src, str(out), '--window-size', str(window)])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='SwinTransformer', arch='tiny', window_size=window,
            init_cfg=dict(type='Pretrained', checkpoint=str(out),
                          prefix='backbone.')))
    reports = []
    model.register_load_state_dict_post_hook(
        lambda module, keys: reports.append(
            (list(keys.missing_keys), list(keys.unexpected_keys))))
    model.init_weights()
    assert reports == [([], [])]
    for key, v in model.state_dict().items():
        have = state['backbone.' + key]
        if key.endswith(TABLE):
            assert v.shape == ((2 * window - 1)**2, have.shape[1])
            torch.testing.assert_close(v, reference_table(have, window),
                                       rtol=1e-6, atol=1e-6)
        elif not key.endswith('relative_position_index'):
            assert torch.equal(v, have), key
    if window == 7:  # the same file as for mmpretrain's own Swin-T config
        stock = tmp_path / 'stock.pth'
        to_backbone.main([src, str(stock), '--stock-config',
                          'mmpretrain::swin_transformer/'
                          'swin-tiny_16xb64_in1k.py'])
        a, b = (torch.load(str(p), weights_only=True)['state_dict']
                for p in (out, stock))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------- timm
def check_timm(src, state, config, dst, img, windows):
    """Export to timm, load strictly, compare the tables with timm's own
    resize and the features with ours; the max abs difference."""
    name, kwargs = export_timm(src, str(dst), img, windows)
    with safe_open(str(dst), 'pt') as f:  # what the metadata names
        meta = f.metadata()
    assert meta['timm_model'] == name
    model = timm.create_model(name, pretrained=False,
                              **json.loads(meta['timm_kwargs']))
    model.load_state_dict(load_file(str(dst)), strict=True)
    model.eval()
    per_stage = [windows] * 4 if isinstance(windows, int) else windows
    tables = {}
    for key, table in model.state_dict().items():
        if key.endswith(TABLE):
            stock = key.replace('layers.', 'stages.').replace(
                'attn.', 'attn.w_msa.')
            src_table = state['backbone.' + stock]
            win = model.get_submodule(key[:-len(TABLE) - 1]).window_size
            want = resize_rel_pos_bias_table(
                src_table, new_window_size=win, new_bias_shape=table.shape)
            torch.testing.assert_close(table, want, rtol=0, atol=0)
            tables[stock] = table
    backbone = ours(config, state, img, per_stage, tables)
    x = torch.randn(2, 3, img, img, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return max_diff(model.forward_features(x).permute(0, 3, 1, 2),
                        backbone(x)[-1])


@pytest.mark.parametrize('img,windows', [
    (512, 16), (256, 8), (128, 4), (128, [16, 16, 8, 4])],
    ids=['w16-same', 'w8', 'w4', 'w16-16-8-4'])
def test_timm_tiny(demo, tmp_path, img, windows):
    """The demo-size export loads strictly into timm at the pre-training
    window (no resize), at smaller ones for every stage, and at one
    window per stage; same features as ours."""
    src, state = demo
    diff = check_timm(src, state, DEMO, tmp_path / 't.safetensors', img,
                      windows)
    print(f'timm demo img {img} windows {windows}: max abs diff {diff:.2e}')


@pytest.mark.parametrize('img,windows', [(224, 7), (256, [16, 16, 16, 8])],
                         ids=['w7-224', 'w16-16-16-8-256'])
def test_timm_swin_t(swin_t, tmp_path, img, windows):
    """Swin-T of the paper config exports to timm's
    swin_tiny_patch4_window7_224 (at 224 px, window 7; and at the
    fine-tuning geometry) with the same features as ours."""
    src, state = swin_t
    diff = check_timm(src, state, PAPER, tmp_path / 't.safetensors', img,
                      windows)
    print(f'timm Swin-T img {img} windows {windows}: max abs diff '
          f'{diff:.2e}')


def test_timm_classifier_head(tmp_path):
    """A fine-tuned classifier's head becomes timm's head: timm's logits
    are the head applied to our pooled features."""
    src = tmp_path / 'cls.pth'
    state = pretrained(DEMO, src, classes=5)
    dst = tmp_path / 'cls.pth.timm'
    name, kwargs = export_timm(str(src), str(dst), 256, 8)
    assert kwargs['num_classes'] == 5
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    model.load_state_dict(torch.load(str(dst), weights_only=True),
                          strict=True)
    tables = {k.replace('layers.', 'stages.').replace('attn.', 'attn.w_msa.'):
              v for k, v in model.state_dict().items() if k.endswith(TABLE)}
    backbone = ours(DEMO, state, 256, [8] * 4, tables)
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        pooled = backbone(x)[-1].mean((2, 3))
        want = pooled @ state['head.fc.weight'].T + state['head.fc.bias']
        max_diff(model(x), want)


# ------------------------------------------------------------- transformers
def check_hf(src, state, config, dst, img, window):
    """Export to transformers, reload with from_pretrained, compare with
    ours (tables: the centre of the pre-trained ones, as
    ummae_to_backbone.py writes them for a smaller window)."""
    export_hf(src, str(dst), img, window)
    model, info = SwinModel.from_pretrained(str(dst),
                                            output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}
    assert sorted(p.name for p in dst.iterdir()) == ['config.json',
                                                     'model.safetensors']
    assert model.config.window_size == window
    model.eval()
    tables = {}
    for key, v in state.items():
        if key.endswith(TABLE):
            side, heads = round(v.shape[0]**.5), v.shape[1]
            lo = (side - (2 * window - 1)) // 2
            grid = v.view(side, side, heads)[lo:side - lo, lo:side - lo]
            tables[key[len('backbone.'):]] = grid.reshape(-1, heads)
    backbone = ours(config, state, img, [window] * 4, tables)
    x = torch.randn(2, 3, img, img, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(pixel_values=x).last_hidden_state
        return max_diff(got, backbone(x)[-1].flatten(2).transpose(1, 2))


@pytest.mark.parametrize('img,window', [(512, 16), (256, 8), (128, 4)],
                         ids=['w16-same', 'w8', 'w4'])
def test_hf_tiny(demo, tmp_path, img, window):
    """The demo-size export is a SwinModel folder that from_pretrained
    loads with nothing missing or unexpected; same features as ours."""
    src, state = demo
    diff = check_hf(src, state, DEMO, tmp_path / 'hf', img, window)
    print(f'transformers demo img {img} window {window}: max abs diff '
          f'{diff:.2e}')


def test_hf_swin_t(swin_t, tmp_path):
    """Swin-T of the paper config as microsoft/swin-tiny-patch4-window7-224
    is laid out (224 px, window 7); same features as ours."""
    src, state = swin_t
    diff = check_hf(src, state, PAPER, tmp_path / 'hf', 224, 7)
    assert json.loads((tmp_path / 'hf' / 'config.json').read_text())[
        'embed_dim'] == 96
    print(f'transformers Swin-T img 224 window 7: max abs diff {diff:.2e}')


# ------------------------------------------------------------------- errors
def run_main(tool, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        tool.main(argv)
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: '), err
    return err[0]


def test_errors_name_the_problem_and_the_fix(demo, tmp_path, capsys):
    src, _ = demo
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    assert 'not a checkpoint file' in run_main(
        to_timm, [str(junk), str(tmp_path / 'o.pth')], capsys)
    ref = tmp_path / 'reference.pth'
    pretrained(REFERENCE, ref)
    line = run_main(to_hf, [str(ref), str(tmp_path / 'o')], capsys)
    assert 'not the reference UMSwinTransformer' in line
    line = run_main(to_hf, [src, str(tmp_path / 'o'), '--img-size', '224',
                            '--window-size', '8'], capsys)
    assert 'stage 3 has a 7x7 map' in line and '--window-size <= 7' in line
    line = run_main(to_timm, [src, str(tmp_path), '--window-size', '8,8'],
                    capsys)
    assert 'is a directory' in line
    with pytest.raises(ExportError, match='does not fit 4 stages'):
        export_timm(src, str(tmp_path / 'o.pth'), 256, [8, 8])


def test_scripts_run_as_commands(demo, tmp_path):
    """The scripts run from the repository root with the installed
    packages (no sys.path edits) and print how to load the result."""
    src, _ = demo
    out = subprocess.run(
        [sys.executable, str(TOOLS / 'ummae_to_timm.py'), src,
         str(tmp_path / 'd.safetensors'), '--img-size', '256',
         '--window-size', '8'], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "timm.create_model('swin_tiny_patch4_window7_224'" in out.stdout
