"""The shipped pre-training configs carry the method's settings.

Every paper config is loaded with mmengine's ``Config``; its name
(mmpretrain style ``{algo}_{backbone}_{N}xb{B}[-accum{A}]-amp-coslr-{E}e_
in1k-{R}px.py``) must agree with its contents, and the settings of the
UM-MAE / SimMIM / MAE recipes (docs/method.md, "Pre-training recipe") are
checked on the config and, at a tiny arch, on the built model and
optimizer.
"""
import ast
import glob
import inspect
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS, TRANSFORMS

import mmumae  # noqa: F401  (registers the UM classes)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
NAME = re.compile(r'^(?P<algo>ummae|simmim|mae)_(?P<backbone>[a-z0-9-]+)_'
                  r'(?P<gpus>\d+)xb(?P<batch>\d+)(-accum(?P<accum>\d+))?'
                  r'-amp(?P<bf16>-bf16)?-coslr-(?P<epochs>\d+)e_in1k-'
                  r'(?P<px>\d+)px\.py$')
PAPER = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
    if osp.basename(osp.dirname(p)) in ('ummae', 'simmim')
    and not p.endswith('_demo.py'))
DEMOS = sorted(
    glob.glob(osp.join(REPO, 'configs', 'ummae', '*_demo.py')) +
    glob.glob(osp.join(REPO, 'configs', 'simmim', '*_demo.py')))
NO_DECAY = ('norm', 'bias', 'mask_token', 'cls_token', 'pos_embed')
TINY_SWIN = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])
TINY_PVT = dict(embed_dims=[8, 8, 8, 16], depths=[1, 1, 1, 1],
                num_heads=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2])
TINY_VIT = dict(embed_dims=16, num_layers=1, num_heads=1,
                feedforward_channels=32)


def _cfg(path: str) -> Config:
    return Config.fromfile(path)


def _name(path: str) -> dict:
    m = NAME.match(osp.basename(path))
    assert m, f'{osp.basename(path)} does not follow the naming scheme'
    return m.groupdict()


def _transform(cfg: Config, suffix: str) -> dict:
    (t, ) = [t for t in cfg.train_dataloader.dataset.pipeline
             if t['type'].endswith(suffix)]
    return t


def test_paper_configs_are_found():
    names = {osp.basename(p) for p in PAPER}
    assert {
        'ummae_swin-tiny-w8_8xb512-amp-coslr-200e_in1k-256px.py',
        'ummae_pvt-small_8xb512-amp-coslr-200e_in1k-256px.py',
        'simmim_swin-tiny-w16_8xb64-accum8-amp-coslr-200e_in1k-256px.py',
        'simmim_pvt-small_8xb64-accum8-amp-coslr-200e_in1k-256px.py',
        'mae_vit-base-p16_8xb512-amp-coslr-200e_in1k-224px.py',
    } <= names
    assert {'ummae_swin-mini_demo.py', 'ummae_pvt-mini_demo.py',
            'simmim_swin-mini_demo.py', 'simmim_pvt-mini_demo.py'} <= {
                osp.basename(p) for p in DEMOS}


@pytest.mark.parametrize('path', PAPER, ids=osp.basename)
def test_name_matches_contents_and_recipe(path):
    name, cfg = _name(path), _cfg(path)
    gpus, batch = int(name['gpus']), int(name['batch'])
    accum = int(name['accum'] or 1)
    total = gpus * batch * accum
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.optim_wrapper.get('accumulative_counts', 1) == accum
    assert cfg.train_cfg.max_epochs == int(name['epochs'])
    crop = _transform(cfg, 'RandomResizedCrop')
    assert crop['scale'] == int(name['px'])
    assert crop['crop_ratio_range'] == (0.2, 1.0)
    assert crop['interpolation'] == 'bicubic'
    # AdamW, lr 1.5e-4 x total / 256, betas (0.9, 0.95), wd 0.05, AMP
    opt = cfg.optim_wrapper.optimizer
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.get('dtype') == (
        'bfloat16' if name['bf16'] else None)  # None: fp16, the paper's
    assert opt.type == 'AdamW'
    assert opt.lr == pytest.approx(1.5e-4 * total / 256)
    assert tuple(opt.betas) == (0.9, 0.95) and opt.weight_decay == 0.05
    assert cfg.auto_scale_lr.base_batch_size == total
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert paramwise.norm_decay_mult == paramwise.bias_decay_mult == 0
    for key in NO_DECAY:
        assert paramwise.custom_keys[key].decay_mult == 0, key
    warmup, cosine = cfg.param_scheduler
    warm = 40 if name['epochs'] == '800' else 10
    assert warmup.end == cosine.begin == warm
    assert cosine.end == int(name['epochs'])


@pytest.mark.parametrize('path', PAPER + DEMOS, ids=osp.basename)
def test_bases_only_from_base_or_own_folder(path):
    """No leaf config inherits another folder's leaf config; OpenMMLab's
    own bases are named by scope (``mmpretrain::``)."""
    tree = ast.parse(open(path).read())
    bases = [
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], 'id', '') == '_base_'
    ]
    (bases, ) = bases
    bases = [bases] if isinstance(bases, str) else bases
    for base in bases:
        assert base.startswith(('../_base_/', './', 'mmpretrain::')), base
    if osp.basename(path).startswith('mae_') and '-bf16-' in path:
        assert bases == ['./' + osp.basename(path).replace('-bf16', '')]
    elif osp.basename(path).startswith('mae_'):  # MAE's bases, no _delete_
        assert 'mmpretrain::_base_/models/mae_vit-base-p16.py' in bases
        assert '_delete_' not in open(path).read()


def _um_paper():
    return [p for p in PAPER if _name(p)['algo'] == 'ummae']


def _simmim_paper():
    return [p for p in PAPER if _name(p)['algo'] == 'simmim']


@pytest.mark.parametrize('path', _um_paper(), ids=osp.basename)
def test_um_configs(path):
    cfg, px = _cfg(path), int(_name(path)['px'])
    gen = _transform(cfg, 'MaskGenerator')
    assert gen['type'] == 'UniformMaskGenerator'
    assert gen['input_size'] == px and gen['mask_patch_size'] == 16
    assert gen['sm_ratio'] == 0.25
    assert TRANSFORMS.build(gen).mask_ratio == 0.75
    default = inspect.signature(
        TRANSFORMS.get('UniformMaskGenerator')).parameters['balanced'].default
    assert gen.get('balanced', default) is True  # balanced US
    assert _transform(cfg, 'PackInputs')['algorithm_keys'] == ['mask',
                                                               'sm_mask']
    assert cfg.model.type == 'UMMAE'
    assert cfg.model.neck.input_size == px
    assert cfg.model.neck.pos_order == 'original'
    assert cfg.model.head.norm_pix is True
    assert cfg.model.head.loss.criterion == 'L2'
    bb = cfg.model.backbone
    if bb.type == 'UMSwinTransformer':
        assert bb.window_size == 8
    elif bb.type == 'UMStockSwinTransformer':  # window-16 tables
        assert bb.um_window_size == 8 and bb.window_size == 16
    elif bb.type == 'UMPVT':
        assert tuple(bb.sr_ratios) == (4, 2, 1, 1)
    else:
        assert bb.type == 'UMVisionTransformer' and px == 224
        assert bb.img_size == 224


@pytest.mark.parametrize('path', _simmim_paper(), ids=osp.basename)
def test_simmim_configs_reference_geometry(path):
    cfg, name = _cfg(path), _name(path)
    bb = cfg.model.backbone
    gen = _transform(cfg, 'MaskGenerator')
    assert gen['input_size'] == 256 and gen['mask_ratio'] == 0.75
    assert gen['mask_patch_size'] == 16
    assert cfg.model.type == 'SimMIM'
    assert cfg.model.head.type == 'SimMIMHead'
    assert cfg.model.head.loss.criterion == 'L1'
    if bb.type == 'SimMIMSwinTransformer':  # the benchmark reference
        assert name['backbone'] == 'stock-swin-tiny-w16'
        assert gen['type'] == 'SimMIMMaskGenerator'
        assert gen['model_patch_size'] == 4 and cfg.model.head.patch_size == 4
        windows = [s['block_cfgs']['window_size'] for s in bb.stage_cfgs]
        assert windows == [16, 16, 16, 8]  # 16, shrunk to the 8x8 map
        return
    assert gen['type'] == 'RandomPatchMaskGenerator'
    assert cfg.model.head.patch_size == 16
    if bb.type == 'UMPVT':
        assert tuple(bb.sr_ratios) == (8, 4, 2, 1)
    elif name['backbone'] == 'swin-tiny-w8':  # the labelled extra
        assert bb.window_size == 8
        assert 'not the reference' in open(path).read()
    else:
        assert name['backbone'] == 'swin-tiny-w16' and bb.window_size == 16


def _tiny(cfg: Config) -> Config:
    bb = cfg.model.backbone
    arch = {'UMSwinTransformer': TINY_SWIN, 'UMPVT': TINY_PVT,
            'UMStockSwinTransformer': TINY_SWIN,
            'SimMIMSwinTransformer': TINY_SWIN,
            'UMVisionTransformer': TINY_VIT, 'MAEViT': TINY_VIT}[bb.type]
    bb.arch = arch
    last = arch['embed_dims']
    last = last[-1] if isinstance(last, list) else (
        last if bb.type in ('UMVisionTransformer', 'MAEViT') else last * 8)
    if cfg.model.type == 'MAE':
        cfg.model.neck.embed_dim = last
    else:
        cfg.model.neck.in_channels = last
    return cfg


@pytest.mark.parametrize('path', PAPER, ids=osp.basename)
def test_built_model_and_optimizer(path):
    """Tiny arch, real classes: geometry on the object, decay exemptions."""
    cfg = _tiny(_cfg(path))
    model = MODELS.build(cfg.model)
    bb = model.backbone
    if type(bb).__name__ == 'UMSwinTransformer':
        assert bb.window_size == cfg.model.backbone.window_size
    if type(bb).__name__ == 'UMPVT':
        assert list(bb.sr_ratios) == list(cfg.model.backbone.sr_ratios)
    if cfg.model.type == 'UMMAE':
        assert model.head.norm_pix and model.neck.pos_order == 'original'
        assert isinstance(model.head.loss_module.penalty, torch.nn.MSELoss)
    if cfg.model.type == 'SimMIM':
        assert isinstance(model.head.loss_module.penalty, torch.nn.L1Loss)
    wrapper = build_optim_wrapper(model, dict(  # fp32: AMP needs a GPU
        type='OptimWrapper', optimizer=cfg.optim_wrapper.optimizer,
        paramwise_cfg=cfg.optim_wrapper.paramwise_cfg))
    decay_of = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay_of[id(p)] = group['weight_decay']
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim == 1 or any(k in name for k in NO_DECAY)
        assert decay_of[id(p)] == (0.0 if exempt else 0.05), name
    assert any('token' in n for n, _ in model.named_parameters())


@pytest.mark.parametrize('folder', ['ummae', 'simmim'])
def test_readme_and_metafile_list_the_configs(folder):
    """Every config of the folder is in its README table; the metafile
    names exactly the paper configs, by their file names."""
    import yaml
    root = osp.join(REPO, 'configs', folder)
    configs = {osp.basename(p) for p in glob.glob(osp.join(root, '*.py'))}
    readme = open(osp.join(root, 'README.md')).read()
    linked = set(re.findall(r'\]\(([^)/]+\.py)\)', readme))
    assert linked == configs
    meta = yaml.safe_load(open(osp.join(root, 'metafile.yml')))
    for m in meta['Models']:
        assert osp.isfile(osp.join(REPO, m['Config'])), m['Config']
        assert m['Config'].endswith(m['Name'] + '.py')
    assert {osp.basename(m['Config']) for m in meta['Models']} == {
        c for c in configs if not c.endswith('_demo.py')}


BF16 = [p for p in PAPER if _name(p)['bf16']]


def test_every_paper_config_has_a_bf16_variant():
    fp16 = {osp.basename(p) for p in PAPER if not _name(p)['bf16']}
    bf16 = {osp.basename(p).replace('-bf16', '') for p in BF16}
    # the stock-Swin UM-MAE config is another's; all others have a variant
    assert fp16 - bf16 <= {
        'ummae_stock-swin-tiny-w8_8xb512-amp-coslr-200e_in1k-256px.py'}
    assert bf16 <= fp16


@pytest.mark.parametrize('path', BF16, ids=osp.basename)
def test_bf16_variant_differs_only_in_dtype(path):
    """The bf16 config is its fp16 sibling with dtype='bfloat16' (bf16 has
    fp32's range: no other setting changes)."""
    bf16 = _cfg(path).to_dict()
    fp16 = _cfg(path.replace('-bf16', '')).to_dict()
    assert bf16['optim_wrapper'].pop('dtype') == 'bfloat16'
    assert bf16 == fp16


@pytest.mark.parametrize('path', [
    p for p in BF16 if osp.basename(p).startswith(('ummae_swin-tiny',
                                                   'ummae_pvt-small'))
], ids=osp.basename)
def test_bf16_steps_on_cpu(path):
    """A few bf16 steps of the bf16 config's model and optimizer on a CPU,
    finite and falling. ``AmpOptimWrapper`` needs a GPU, so the forward is
    autocast as its ``optim_context`` does (mmengine's ``autocast`` with
    the config's dtype; CPU autocast supports bf16) and the step is the
    config's optimizer in a plain ``OptimWrapper``."""
    import numpy as np
    from mmengine.runner import autocast
    from mmpretrain.structures import DataSample
    cfg = _tiny(_cfg(path))
    cfg.model.neck.update(embed_dims=32, num_heads=2, depth=1)
    dtype = getattr(torch, cfg.optim_wrapper.dtype)
    assert dtype is torch.bfloat16
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(cfg.optim_wrapper.optimizer,
                                            lr=2e-3),
        paramwise_cfg=cfg.optim_wrapper.paramwise_cfg))
    gen = TRANSFORMS.build(_transform(cfg, 'MaskGenerator'))
    np.random.seed(0)
    drawn = [gen({}) for _ in range(4)]
    samples = [DataSample(mask=d['mask'], sm_mask=d['sm_mask'])
               for d in drawn]
    x = torch.randn(4, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(6):
        with autocast(device_type='cpu', dtype=dtype):
            feats = model.backbone(x, torch.stack([d['mask'] for d in drawn]),
                                   torch.stack([d['sm_mask'] for d in drawn]))
            assert feats[-1].dtype == torch.bfloat16  # really bf16
            loss = model.loss(x, samples)['loss']
        wrapper.update_params(loss)
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0] - 1e-3, losses
