"""Checkpoint converters (mmumae_tools.converters and their scripts in
tools/model_converters).

mmumae -> backbone-only: a freshly built tiny UMMAE / classifier saved in
mmengine's format, converted, and loaded back through the backbones'
``init_cfg=dict(type='Pretrained', prefix='backbone.')``.

Official -> mmumae: state dicts built from the measured key lists of the
reference models (random tensors, so each tensor is recognised by its
values), converted, loaded into the live mmumae model; where each official
tensor went is found by value, never from the converter's own table.
"""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import save_checkpoint
from mmpretrain.registry import MODELS
from tool_helpers import REPO, load_tool

from mmumae.models.utils.pos_embed import sincos_2d_colfirst
from mmumae_tools.converters import ConversionError
from mmumae_tools.converters import backbone as to_backbone
from mmumae_tools.converters import official

TOOLS = REPO / 'tools' / 'model_converters'
backbone_cli = load_tool(TOOLS / 'ummae_to_backbone.py', 'ummae_to_backbone')
official_cli = load_tool(TOOLS / 'official_to_mmumae.py',
                         'official_to_mmumae')

SHIPPED = REPO / 'tests' / 'data' / 'official_checkpoint_layout'
SHARED = REPO.parent / 'shared' / 'docs' / 'official_checkpoint_layout'
LAYOUTS = SHARED if SHARED.is_dir() else SHIPPED
SMALL = ['pretrain_mae_swin_tiny_256', 'pretrain_mae_pvt_small_256',
         'finetune_swin_tiny_256', 'finetune_pvt_small_256']

Layout = List[Tuple[str, Tuple[int, ...], str, float]]


# ------------------------------------------------------------------ helpers
def read_layout(name: str) -> Layout:
    """(key, shape, param|buffer, LayerNorm eps or None) per entry."""
    rows = []
    for line in (LAYOUTS / f'{name}.txt').read_text().splitlines():
        if line.startswith('#') or not line.strip():
            continue
        cols = line.split('\t')
        shape = tuple(int(s) for s in re.findall(r'\d+', cols[1]))
        eps = float(cols[3][4:]) if len(cols) > 3 and cols[3] else None
        rows.append((cols[0], shape, cols[2], eps))
    return rows


def official_state(name: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random tensors in the layout of ``name``; PVT pre-training stores
    the fixed column-first sin-cos table as ``pos_embed``."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(shape, generator=gen)
             for k, shape, _, _ in read_layout(name)}
    if name.startswith('pretrain') and 'pos_embed' in state:
        state['pos_embed'] = sincos_2d_colfirst(64, 64, 64)[None]
    return state


def save_official(state: dict, path: Path) -> str:
    # As the reference code saves: weights under "model", plus its args.
    torch.save(dict(model=state, epoch=1,
                    args=argparse.Namespace(model='x')), path)
    return str(path)


def build(cfg: Config, **backbone) -> torch.nn.Module:
    """Build ``cfg.model`` with backbone overrides, eval mode."""
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(cfg.model.backbone, **backbone)
    return MODELS.build(model_cfg).eval()


def randomise(model: torch.nn.Module) -> None:
    """Move every tensor off its initial value (norms included)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.state_dict().values():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def demo_cfgs(family: str) -> Tuple[Config, Config]:
    pre = Config.fromfile(REPO / f'configs/ummae/ummae_{family}-mini_demo.py')
    ft = Config.fromfile(
        REPO / f'configs/finetune/{family}-mini_ummae-pre_demo.py')
    return pre, ft


def _dense_registries():
    from mmdet.registry import MODELS as DET
    from mmseg.registry import MODELS as SEG
    return DET, SEG


def save_mmengine(model, cfg: Config, path: Path) -> str:
    """What mmengine's Runner writes (meta with the config, weights)."""
    save_checkpoint(dict(meta=dict(cfg=cfg.pretty_text, epoch=1),
                         state_dict=model.state_dict()), str(path))
    return str(path)


# ------------------------------------------------- mmumae -> backbone-only
@pytest.mark.parametrize('family', ['swin', 'pvt'])
def test_pretrain_to_backbone_loads_everywhere(tmp_path, family):
    pre_cfg, ft_cfg = demo_cfgs(family)
    pre = build(pre_cfg)
    randomise(pre)
    full = save_mmengine(pre, pre_cfg, tmp_path / 'pre.pth')
    out = str(tmp_path / 'backbone.pth')
    to_backbone.convert(full, out)
    saved = torch.load(out, weights_only=True)['state_dict']
    expected = {k: v for k, v in pre.state_dict().items()
                if k.startswith('backbone.')}
    assert list(saved) == list(expected)
    assert all(torch.equal(saved[k], v) for k, v in expected.items())

    # The demo fine-tuning classifier, from the full file and from the
    # backbone-only one: the same tensors, the same outputs.
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    outs = []
    for ckpt in (full, out):
        clf = build(ft_cfg, init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                                          prefix='backbone.'))
        clf.init_weights()
        own = clf.backbone.state_dict()
        for k, v in own.items():
            if k == 'pos_embed':  # learnable here, fixed in pre-training
                table = sincos_2d_colfirst(32, 32, 32)[None]
                torch.testing.assert_close(v, table)
            else:
                assert torch.equal(v, expected['backbone.' + k]), k
        outs.append(clf.backbone(x)[-1])
    assert torch.equal(outs[0], outs[1])

    # mmdet and mmseg build the same class by its cross-scope name; with
    # four outputs the three new output norms keep their init, the rest
    # loads.
    for registry in _dense_registries():
        dense = registry.build(dict(
            ft_cfg.model.backbone, out_indices=(0, 1, 2, 3),
            type=f'mmpretrain.{ft_cfg.model.backbone.type}',
            init_cfg=dict(type='Pretrained', checkpoint=out,
                          prefix='backbone.')))
        dense.init_weights()
        for k, v in dense.state_dict().items():
            if re.match(r'norm[012]\.', k):
                assert torch.equal(v, torch.ones_like(v) if k.endswith(
                    'weight') else torch.zeros_like(v)), k
            elif k != 'pos_embed':
                assert torch.equal(v, expected['backbone.' + k]), k

    # With the pre-training geometry the loaded backbone computes exactly
    # what the pre-trained one does on a dense input.
    geometry = dict(window_size=pre_cfg.model.backbone.window_size) \
        if family == 'swin' else dict(
            sr_ratios=pre_cfg.model.backbone.sr_ratios,
            learnable_pos_embed=False)
    same = build(ft_cfg, init_cfg=dict(type='Pretrained', checkpoint=out,
                                       prefix='backbone.'), **geometry)
    same.init_weights()
    with torch.no_grad():
        torch.testing.assert_close(
            same.backbone(x)[-1], pre.backbone(x)[-1], rtol=0, atol=0)


def test_vit_finetune_loads_ummae_vit(tmp_path):
    """The ViT-B fine-tuning config on a UMMAEViT checkpoint (tiny arch):
    every encoder tensor loads; only the MAE-style pooled-feature norm
    (``ln2``) is new, the pre-training's ``ln1`` and mask token unused."""
    arch = dict(embed_dims=64, num_layers=2, num_heads=2,
                feedforward_channels=128)
    pre_cfg = Config.fromfile(
        REPO / 'configs/ummae/ummae_vit-base-p16_8xb512-amp-coslr-200e_'
        'in1k-224px.py')
    pre_cfg.model.backbone.arch = arch
    pre_cfg.model.neck.update(in_channels=64, embed_dims=64, depth=1,
                              num_heads=2)
    pre = build(pre_cfg)
    randomise(pre)
    full = save_mmengine(pre, pre_cfg, tmp_path / 'vit.pth')
    out = str(tmp_path / 'vit_backbone.pth')
    to_backbone.convert(full, out)
    ft_cfg = Config.fromfile(
        REPO / 'configs/finetune/vit-base-p16_ummae-pre_8xb128-coslr-100e_'
        'in1k-224px.py')
    ft_cfg.model.head.in_channels = 64
    ours = pre.backbone.state_dict()
    for ckpt in (full, out):
        clf = build(ft_cfg, arch=arch, init_cfg=dict(
            type='Pretrained', checkpoint=ckpt, prefix='backbone.'))
        clf.init_weights()
        own = clf.backbone.state_dict()
        assert sorted(set(ours) - set(own)) == [
            'ln1.bias', 'ln1.weight', 'mask_token']
        assert sorted(set(own) - set(ours)) == ['ln2.bias', 'ln2.weight']
        assert all(torch.equal(v, ours[k]) for k, v in own.items()
                   if k in ours)


def test_finetuned_classifier_to_backbone(tmp_path):
    _, ft_cfg = demo_cfgs('swin')
    clf = build(ft_cfg, init_cfg=None)
    randomise(clf)
    full = save_mmengine(clf, ft_cfg, tmp_path / 'clf.pth')
    out = str(tmp_path / 'backbone.pth')
    to_backbone.convert(full, out)
    saved = torch.load(out, weights_only=True)['state_dict']
    assert not [k for k in saved if not k.startswith('backbone.')]
    assert len(saved) == len(clf.backbone.state_dict())
    fresh = build(ft_cfg, init_cfg=dict(type='Pretrained', checkpoint=out,
                                        prefix='backbone.'))
    fresh.init_weights()
    for k, v in clf.backbone.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[k], v), k


def test_ummae_to_backbone_refuses(tmp_path):
    pre_cfg, _ = demo_cfgs('swin')
    pre = build(pre_cfg)
    state = pre.state_dict()
    del state['backbone.stages.2.blocks.1.attn.qkv.weight']
    path = tmp_path / 'truncated.pth'
    save_checkpoint(dict(meta=dict(cfg=pre_cfg.pretty_text),
                         state_dict=state), str(path))
    with pytest.raises(ConversionError, match='stages.2.blocks.1.attn.qkv'):
        to_backbone.convert(str(path), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()

    junk = tmp_path / 'junk.pth'
    torch.save(dict(state_dict=dict(weight=torch.zeros(3))), junk)
    result = subprocess.run(
        [sys.executable, str(TOOLS / 'ummae_to_backbone.py'), str(junk),
         str(tmp_path / 'out.pth')], capture_output=True, text=True)
    assert result.returncode == 1
    assert "refused: no key of" in result.stderr
    assert not (tmp_path / 'out.pth').exists()


# ------------------------------------------------------- official -> mmumae
def _where(converted: Dict[str, torch.Tensor]) -> Dict[bytes, str]:
    """Tensor values -> the mmumae key that holds them."""
    return {v.contiguous().view(-1).numpy().tobytes(): k
            for k, v in converted.items()}


def _module_eps(model: torch.nn.Module, key: str) -> float:
    return model.get_submodule(key.rsplit('.', 1)[0]).eps


@pytest.mark.parametrize('name', SMALL)
def test_official_places_every_tensor(tmp_path, name):
    state = official_state(name)
    src = save_official(state, tmp_path / 'official.pth')
    dst = tmp_path / 'mmumae.pth'
    official.convert(src, str(dst))  # model and kind detected
    ckpt = torch.load(dst, weights_only=True)
    cfg = Config.fromstring(ckpt['meta']['cfg'], file_format='.py')
    model = build(cfg, init_cfg=None)
    model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    missing, unexpected = model.load_state_dict(ckpt['state_dict'],
                                                strict=False)
    assert unexpected == []
    finetune = name.startswith('finetune')
    n = len(model.backbone.depths)
    norms = [f'backbone.norm{n - 1}.weight', f'backbone.norm{n - 1}.bias']
    assert missing == (norms if finetune else [])

    # Every official tensor sits, unchanged, at the place its key names.
    where = _where(model.state_dict())
    depths = list(model.backbone.depths)
    placed = set()
    for key, _, _, eps in read_layout(name):
        if key.startswith('fc_norm.') or (key == 'pos_embed'
                                          and not finetune):
            continue  # documented drops, checked below
        ours = where.get(state[key].view(-1).numpy().tobytes())
        assert ours is not None, f'{key} was not placed'
        placed.add(ours)
        if '.' in key:  # weight to weight, bias to bias
            assert ours.rsplit('.', 1)[-1] == key.rsplit('.', 1)[-1]
        m = re.match(r'blocks\.(\d+)\.', key)
        if m:
            i, j = map(int, re.match(
                r'backbone\.stages\.(\d+)\.(?:blocks\.(\d+)\.)?',
                ours).groups(default='0'))
            k = int(m.group(1))
            assert k == sum(depths[:i]) + (0 if 'downsample' in key else j)
        if eps is not None:  # LayerNorm eps as the reference's
            assert _module_eps(model, ours) == pytest.approx(eps), key
    # Nothing left at initialisation but the documented exceptions.
    rest = set(before) - placed
    expect = set(norms + ['backbone.mask_token']) if finetune else set()
    assert rest == expect
    if finetune:
        assert not model.state_dict()['backbone.mask_token'].any()
    if name.startswith('pretrain'):
        assert cfg.model.neck.pos_order == 'reference'


def test_official_conventions(tmp_path):
    # Swin position MLP: key-minus-query input on both sides, so the first
    # layer is copied, not negated.
    state = official_state('pretrain_mae_swin_tiny_256')
    out = official.convert_state(state, 'swin-tiny', 'pretrain', [2, 2, 6, 2])
    rpe = out['backbone.stages.2.blocks.3.attn.rpe_mlp.0.weight']
    assert torch.equal(rpe, state['blocks.7.attn.posmlp.0.weight'])
    # PVT pre-training pos_embed: the converter drops it because mmumae
    # computes the same table (column-first) for the 64x64 grid.
    pvt = Config.fromfile(
        REPO / official.TARGETS['pvt-small', 'pretrain']).model.backbone
    backbone = MODELS.build(dict(pvt, init_cfg=None))
    table = backbone.position_embedding((64, 64), 'cpu', torch.float32)
    pe = official_state('pretrain_mae_pvt_small_256')['pos_embed']
    torch.testing.assert_close(table, pe[0])
    # ... and refuses one that is not that table.
    bad = official_state('pretrain_mae_pvt_small_256')
    bad['pos_embed'] = bad['pos_embed'].flip(-1)
    with pytest.raises(ConversionError, match='pos_embed differs'):
        official.convert_state(bad, 'pvt-small', 'pretrain', [3, 4, 6, 3])


def test_official_swin_large_keys():
    """Swin-L (no value check: 200M parameters); zero-memory tensors."""
    state = {k: torch.zeros(1).expand(shape) for k, shape, _, _ in
             read_layout('pretrain_mae_swin_large_256')}
    assert official.detect(state) == ('swin-large', 'pretrain')
    target = build(official.target_config('swin-large', 'pretrain'),
                   init_cfg=None)
    out = official.convert_state(state, 'swin-large', 'pretrain',
                                 list(target.backbone.depths))
    out = official.fit_to_target(out, target, 'pretrain')
    assert len(out) == len(target.state_dict()) == len(state)


def test_official_refuses(tmp_path):
    dst = tmp_path / 'out.pth'
    truncated = official_state('pretrain_mae_swin_tiny_256')
    del truncated['blocks.5.mlp.fc2.weight']
    src = save_official(truncated, tmp_path / 'truncated.pth')
    with pytest.raises(ConversionError, match=r'stay at their init.*'
                       r'stages\.2\.blocks\.1\.ffn\.layers\.1\.weight'):
        official.convert(src, str(dst))

    pvt = save_official(official_state('finetune_pvt_small_256'),
                        tmp_path / 'pvt.pth')
    with pytest.raises(ConversionError, match='holds a pvt-small finetune'):
        official.convert(pvt, str(dst), model='swin-tiny')
    with pytest.raises(ConversionError, match='holds a pvt-small finetune'):
        official.convert(pvt, str(dst), kind='pretrain')

    extra = official_state('finetune_swin_tiny_256')
    extra['blocks.0.attn.relative_position_bias_table'] = torch.zeros(3)
    src = save_official(extra, tmp_path / 'extra.pth')
    with pytest.raises(ConversionError, match='no place in the mmumae'):
        official.convert(src, str(dst))
    extra = official_state('finetune_swin_tiny_256')
    extra['cls_token'] = torch.zeros(1, 1, 96)
    src = save_official(extra, tmp_path / 'extra.pth')
    with pytest.raises(ConversionError, match='1 keys have no place in '
                       r'mmumae \(cls_token.\*: 1'):
        official.convert(src, str(dst))

    junk = save_official({'weight': torch.zeros(3)}, tmp_path / 'junk.pth')
    result = subprocess.run(
        [sys.executable, str(TOOLS / 'official_to_mmumae.py'), junk,
         str(dst)], capture_output=True, text=True)
    assert result.returncode == 1
    assert 'refused: not a UM-MAE Swin or PVT state dict' in result.stderr
    assert not dst.exists()


@pytest.mark.skipif(not SHARED.is_dir(), reason='no ../shared beside repo')
def test_shipped_layouts_match_shared():
    for path in sorted(SHARED.glob('*.txt')):
        assert (SHIPPED / path.name).read_text() == path.read_text()


# ------------------------------------------- bad input, output, class count
def _run_main(tool, argv, monkeypatch, capsys) -> str:
    """Run a converter's command line in-process; returns its stderr,
    which must be one line, after exit status 1."""
    monkeypatch.setattr(sys, 'argv', ['converter'] + [str(a) for a in argv])
    with pytest.raises(SystemExit) as exc:
        tool.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('refused: '), err
    return err.strip()


def _bad_inputs(tmp_path: Path, real: Path) -> Dict[str, Tuple[Path, str]]:
    """name -> (file, the reason in its message)."""
    junk = tmp_path / 'random.pth'
    junk.write_bytes(bytes(range(256)) * 40)
    text = tmp_path / 'notes.pth'
    text.write_text('not weights\n' * 20)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    folder = tmp_path / 'folder.pth'
    folder.mkdir()
    cut = tmp_path / 'truncated.pth'
    data = real.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    return {
        'random bytes': (junk, 'not a checkpoint file'),
        'text': (text, 'not a checkpoint file'),
        '0 bytes': (empty, 'not a checkpoint file'),
        'directory': (folder, 'not a checkpoint file'),
        'truncated': (cut, 'not a checkpoint file'),
        'missing': (tmp_path / 'missing.pth', 'checkpoint not found'),
    }


def test_bad_inputs_answer_one_line(tmp_path, monkeypatch, capsys):
    """Both converters: every kind of bad file gets the reader's one line
    after 'refused:', exit status 1, and no output file."""
    pre_cfg, _ = demo_cfgs('swin')
    real = Path(save_mmengine(build(pre_cfg), pre_cfg, tmp_path / 'ok.pth'))
    out = tmp_path / 'out.pth'
    bad = _bad_inputs(tmp_path, real)
    for tool in (backbone_cli, official_cli):
        for name, (path, reason) in bad.items():
            err = _run_main(tool, [path, out], monkeypatch, capsys)
            assert err.startswith(f'refused: {reason}: {path}'), (name, err)
            assert 'weights_only' not in err and 'Traceback' not in err
            assert not out.exists()


def test_output_is_not_the_input(tmp_path, monkeypatch, capsys):
    pre_cfg, _ = demo_cfgs('swin')
    src = Path(save_mmengine(build(pre_cfg), pre_cfg, tmp_path / 'pre.pth'))
    before = src.read_bytes()
    link = tmp_path / 'link.pth'
    link.symlink_to(src)
    for tool, dst in ((backbone_cli, src), (backbone_cli, link),
                      (official_cli, src)):
        err = _run_main(tool, [src, dst], monkeypatch, capsys)
        assert 'is the input file' in err, err
    assert src.read_bytes() == before  # the training checkpoint is intact
    err = _run_main(backbone_cli, [src, tmp_path], monkeypatch, capsys)
    assert 'is a directory' in err


def test_failed_write_leaves_nothing(tmp_path):
    """A write that fails half-way (here: a file-size limit, as a full disk
    stops a write) leaves no partial output and no temporary file, and says
    which file could not be written."""
    pre_cfg, _ = demo_cfgs('swin')
    src = save_mmengine(build(pre_cfg), pre_cfg, tmp_path / 'pre.pth')
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    dst = out_dir / 'backbone.pth'
    script = (
        'import resource, signal, runpy, sys\n'
        'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n'
        'resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))\n'
        f'sys.argv = ["ummae_to_backbone.py", {src!r}, {str(dst)!r}]\n'
        f'runpy.run_path({str(TOOLS / "ummae_to_backbone.py")!r}, '
        'run_name="__main__")\n')
    result = subprocess.run([sys.executable, '-c', script],
                            capture_output=True, text=True,
                            env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f'refused: cannot write {dst}: '), last
    assert 'nothing was written' in last
    assert list(out_dir.iterdir()) == []  # no partial file, no .tmp
    # and without the limit the same call writes the file, atomically
    to_backbone.convert(src, str(dst))
    assert sorted(p.name for p in out_dir.iterdir()) == ['backbone.pth']
    assert torch.load(dst, weights_only=True)['state_dict']


def test_official_finetuned_other_class_count(tmp_path, monkeypatch,
                                              capsys):
    state = official_state('finetune_swin_tiny_256')
    state['head.weight'] = torch.randn(10, 768)
    state['head.bias'] = torch.randn(10)
    src = save_official(state, tmp_path / 'ft10.pth')
    dst = tmp_path / 'mmumae.pth'
    out = official.convert(src, str(dst))  # count read from the file
    assert torch.equal(out['head.fc.weight'], state['head.weight'])
    ckpt = torch.load(dst, weights_only=True)
    cfg = Config.fromstring(ckpt['meta']['cfg'], file_format='.py')
    assert cfg.model.head.num_classes == 10
    model = build(cfg, init_cfg=None)
    missing, unexpected = model.load_state_dict(ckpt['state_dict'],
                                                strict=False)
    assert unexpected == [] and all('norm3' in k for k in missing)
    dst.unlink()
    official.convert(src, str(dst), num_classes=10)
    assert dst.exists()
    dst.unlink()
    err = _run_main(official_cli, [src, dst, '--num-classes', 1000],
                    monkeypatch, capsys)
    assert 'head has 10 classes, not the 1000' in err
    assert not dst.exists()


# --------------------------------------------------- the stock-Swin layout
STOCK_DEMO = REPO / 'configs' / 'ummae' / 'ummae_stock-swin-mini_demo.py'


@pytest.fixture(scope='module')
def stock_ckpt(tmp_path_factory) -> Tuple[str, Dict[str, torch.Tensor]]:
    """A UMStockSwinTransformer demo checkpoint, every tensor off its
    init, and the stock config of a four-output (detector-like) Swin."""
    cfg = Config.fromfile(STOCK_DEMO)
    model = build(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(0.05 * torch.randn(v.shape, generator=gen))
    folder = tmp_path_factory.mktemp('stock')
    (folder / 'four_outputs.py').write_text(
        "default_scope = 'mmpretrain'\nmodel = dict(backbone=dict("
        f"type='SwinTransformer', arch={dict(cfg.model.backbone.arch)!r}, "
        "img_size=128, window_size=8, out_indices=(0, 1, 2, 3)))\n")
    return (save_mmengine(model, cfg, folder / 'pre.pth'),
            model.state_dict())


def test_stock_layout_new_output_norms_at_layernorm_init(stock_ckpt, tmp_path):
    """Output norms the pre-training never had (norm0-norm2 of a
    four-output backbone) are written as LayerNorm initialises them
    (weight 1, bias 0); the one it had (norm3) is the pre-trained one."""
    src, state = stock_ckpt
    out = tmp_path / 'stock.pth'
    to_backbone.convert(src, str(out), stock_config=str(
        Path(src).parent / 'four_outputs.py'))
    saved = torch.load(out, weights_only=True)['state_dict']
    for i in range(3):
        assert torch.equal(saved[f'backbone.norm{i}.weight'],
                           torch.ones_like(saved[f'backbone.norm{i}.weight']))
        assert not saved[f'backbone.norm{i}.bias'].any()
    for key in ('backbone.norm3.weight', 'backbone.norm3.bias'):
        assert torch.equal(saved[key], state[key])


def test_missing_stock_config_is_refused(stock_ckpt, tmp_path, monkeypatch,
                                         capsys):
    """--stock-config naming no config answers one 'refused:' line."""
    src, _ = stock_ckpt
    out = tmp_path / 'out.pth'
    for config in (tmp_path / 'nope.py', 'mmdet::swin/nope.py'):
        err = _run_main(backbone_cli, [src, out, '--stock-config', config],
                        monkeypatch, capsys)
        assert err.startswith(f'refused: --stock-config {config}: no such '
                              'config'), err
        assert not out.exists()
