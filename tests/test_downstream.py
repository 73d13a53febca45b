"""The downstream configs (configs/mmdet, configs/mmseg) on CPU.

A tiny UM-MAE (Swin or PVT encoder) takes one pre-training step and is saved
as an mmengine checkpoint, then converted by
tools/model_converters/ummae_to_backbone.py. The real configs, with the
backbone shrunk through ``cfg.merge_from_dict`` (what ``--cfg-options``
does), load it; the demo configs train one iteration and evaluate with
mmengine's Runner on data/demo (mmdet's CocoMetric, mmseg's IoUMetric, mmcv's
compiled RoIAlign and NMS).
"""
import copy
import importlib
from pathlib import Path

import mmcv.ops
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.hub import get_config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, save_checkpoint
from mmpretrain.structures import DataSample
from tool_helpers import load_tool, plain_config

import mmumae  # noqa: F401  (registers the backbones in mmpretrain's registry)
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.models.backbones import UMPVT, UMSwinTransformer

# numpy 2 warns on every torch -> numpy conversion inside pycocotools and
# the OpenMMLab packages; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings(
        'ignore:__array__ implementation:DeprecationWarning'),
    pytest.mark.filterwarnings(
        'ignore:`reduce_zero_label` will be deprecated'),
    pytest.mark.filterwarnings('ignore:``build_loss`` would be deprecated'),
    pytest.mark.filterwarnings('ignore:Default ``avg_non_ignore`` is False'),
    pytest.mark.filterwarnings('ignore:.*`num_anchors` is deprecated'),
    pytest.mark.filterwarnings('ignore:The draw is False'),
]

REPO = Path(__file__).resolve().parents[1]
DET = REPO / 'configs' / 'mmdet'
SEG = REPO / 'configs' / 'mmseg'
TINY_SWIN = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4])
TINY_PVT = dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])
SWIN_DIMS = [16, 32, 64, 128]
PVT_DIMS = [8, 16, 32, 64]
PRE_SIZE = 64  # pre-training image size


# ------------------------------------------------------------ checkpoints
def _pretrain_checkpoint(path, backbone, decoder_in):
    """One UM-MAE step on random images, saved as a runner would."""
    from mmumae.registry import MODELS
    torch.manual_seed(0)
    np.random.seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(
                type='UMMAE',
                backbone=backbone,
                neck=dict(
                    type='UMMAEPretrainDecoder',
                    in_channels=decoder_in,
                    embed_dims=32,
                    depth=1,
                    num_heads=2,
                    input_size=PRE_SIZE),
                head=dict(
                    type='MAEPretrainHead',
                    norm_pix=True,
                    patch_size=16,
                    loss=dict(type='PixelReconstructionLoss',
                              criterion='L2'))))
    model.init_weights()
    gen = UniformMaskGenerator(input_size=PRE_SIZE)
    samples = []
    for _ in range(2):
        res = gen(dict())
        ds = DataSample()
        ds.set_field(res['mask'], 'mask')
        ds.set_field(res['sm_mask'], 'sm_mask')
        samples.append(ds)
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model.loss(torch.randn(2, 3, PRE_SIZE, PRE_SIZE), samples)['loss']
    loss.backward()
    optim.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_checkpoint(dict(meta=dict(), state_dict=state), str(path))
    return {k[len('backbone.'):]: v for k, v in state.items()
            if k.startswith('backbone.')}


def _checkpoints(tmp_path_factory, name, backbone, decoder_in):
    """(full checkpoint, converted checkpoint, backbone state)."""
    folder = tmp_path_factory.mktemp(name)
    full, converted = folder / 'pretrain.pth', folder / 'backbone.pth'
    state = _pretrain_checkpoint(full, backbone, decoder_in)
    tool = load_tool(REPO / 'tools' / 'model_converters' /
                     'ummae_to_backbone.py', 'ummae_to_backbone')
    tool.convert(str(full), str(converted))
    return dict(full=str(full), converted=str(converted), state=state)


@pytest.fixture(scope='module')
def swin_ckpt(tmp_path_factory):
    return _checkpoints(
        tmp_path_factory, 'ummae_swin',
        dict(type='UMSwinTransformer', arch=TINY_SWIN, window_size=4),
        decoder_in=SWIN_DIMS[-1])


@pytest.fixture(scope='module')
def pvt_ckpt(tmp_path_factory):
    return _checkpoints(
        tmp_path_factory, 'ummae_pvt',
        dict(type='UMPVT', arch=TINY_PVT, sr_ratios=(4, 2, 1, 1)),
        decoder_in=PVT_DIMS[-1])


# ---------------------------------------------------------------- configs
def _tiny_backbone(family, ckpt):
    """--cfg-options-style overrides: tiny arch, checkpoint path."""
    arch = TINY_SWIN if family == 'swin' else TINY_PVT
    opts = {'model.backbone.arch': dict(_delete_=True, **arch),
            'model.backbone.init_cfg.checkpoint': ckpt}
    if family == 'swin':
        opts['model.backbone.window_size'] = 4
    return opts


def _det_config(path, family, ckpt, **extra):
    """A configs/mmdet file with a tiny backbone and FPN inputs to match."""
    cfg = Config.fromfile(str(path))
    dims = SWIN_DIMS if family == 'swin' else PVT_DIMS
    outs = cfg.model.backbone.out_indices
    opts = _tiny_backbone(family, ckpt)
    opts['model.neck.in_channels'] = [dims[i] for i in outs]
    opts.update(extra)
    cfg.merge_from_dict(opts)
    return cfg


def _seg_config(path, family, ckpt, **extra):
    cfg = Config.fromfile(str(path))
    dims = SWIN_DIMS if family == 'swin' else PVT_DIMS
    opts = _tiny_backbone(family, ckpt)
    opts.update({'model.decode_head.in_channels': dims,
                 'model.auxiliary_head.in_channels': dims[2]})
    opts.update(extra)
    cfg.merge_from_dict(opts)
    return cfg


def _build(cfg):
    scope = cfg.default_scope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(copy.deepcopy(cfg.model))
        model.init_weights()
    return model


def _assert_loaded(backbone, state, new=()):
    """Every backbone tensor of the checkpoint is loaded under its name;
    the only other tensors are the output norms of stages pre-training did
    not output (and ``new``), left at their init."""
    got = backbone.state_dict()
    extra = set(got) - set(state)
    assert set(state) <= set(got)
    norms = {f'norm{i}.{w}' for i in backbone.out_indices if i != 3
             for w in ('weight', 'bias')}
    assert extra == norms | set(new)
    for k in norms:
        fill = 1. if k.endswith('weight') else 0.
        assert torch.equal(got[k], torch.full_like(got[k], fill)), k
    for k, v in state.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)


MODEL_CONFIGS = [
    (DET / 'mask-rcnn_swin-tiny-w16_ummae-pre_fpn_8xb2-1x_coco.py', 'swin'),
    (DET / 'mask-rcnn_pvt-small_ummae-pre_fpn_8xb2-ms-crop-3x_coco.py',
     'pvt'),
    (DET / 'gfl_swin-tiny-w16_ummae-pre_fpn_8xb2-lsj-amp-coslr-25e_'
     'coco-1024px.py', 'swin'),
    (SEG / 'upernet_swin-tiny-w16_ummae-pre_8xb2-160k_ade20k-512x512.py',
     'swin'),
    (SEG / 'upernet_pvt-small_ummae-pre_8xb2-160k_ade20k-512x512.py', 'pvt'),
]


# every model config with the converted checkpoint, two with the full one
LOAD_CASES = [(p, f, 'converted') for p, f in MODEL_CONFIGS] + [
    MODEL_CONFIGS[0] + ('full', ), MODEL_CONFIGS[-1] + ('full', )]


@pytest.mark.parametrize(
    'path,family,kind', LOAD_CASES,
    ids=[f"{p.name.split('_ummae')[0]}-{k}" for p, _, k in LOAD_CASES])
def test_paper_configs_load_pretrained_backbone(path, family, kind,
                                                swin_ckpt, pvt_ckpt):
    ckpts = swin_ckpt if family == 'swin' else pvt_ckpt
    build = _det_config if path.parent == DET else _seg_config
    cfg = build(path, family, ckpts[kind])
    bb_cfg = cfg.model.backbone
    assert bb_cfg.init_cfg.prefix == 'backbone.'
    assert bb_cfg.drop_path_rate == 0.1
    if family == 'swin':
        assert bb_cfg.window_size == 4  # the override; the config says 16
        assert Config.fromfile(str(path)).model.backbone.window_size == 16
    else:
        assert tuple(bb_cfg.sr_ratios) == (8, 4, 2, 1)
        assert bb_cfg.learnable_pos_embed and bb_cfg.pretrain_img_size == 256
    if path.parent == SEG:
        assert cfg.model.test_cfg == dict(
            mode='slide', crop_size=(512, 512), stride=(341, 341))
    model = _build(cfg)
    bb = model.backbone
    assert isinstance(bb, UMSwinTransformer if family == 'swin' else UMPVT)
    # PVT: the learnable embedding is new (pre-training used the fixed
    # table) and starts from it
    _assert_loaded(bb, ckpts['state'], new=() if family == 'swin' else
                   ('pos_embed', ))
    if family == 'pvt':
        assert bb.pos_embed.shape == (1, 64 * 64, PVT_DIMS[0])


def test_in1k_ft_configs_differ_only_in_checkpoint():
    pairs = sorted(DET.glob('*_ummae-pre_*.py')) + sorted(
        SEG.glob('*_ummae-pre_*.py'))
    assert len(pairs) == 8  # Mask R-CNN 1x, 3x, GFL; UperNet; x2 backbones
    for pre in pairs:
        ft = pre.with_name(pre.name.replace('_ummae-pre_', '_ummae-in1k-ft_'))
        a = Config.fromfile(str(pre)).to_dict()
        b = Config.fromfile(str(ft)).to_dict()
        a_ckpt = a['model']['backbone']['init_cfg'].pop('checkpoint')
        b_ckpt = b['model']['backbone']['init_cfg'].pop('checkpoint')
        assert a.pop('checkpoint') == a_ckpt
        assert b.pop('checkpoint') == b_ckpt
        assert a_ckpt.endswith('200e_backbone.pth'), pre.name
        assert b_ckpt.endswith('200e_in1k-ft_backbone.pth'), ft.name
        assert a == b, ft.name


# ------------------------------------------------------------- inheritance
def _drop(cfg, *paths):
    """``cfg`` (plain) without the entries at the dotted ``paths``."""
    for path in paths:
        *parents, key = path.split('.')
        node = cfg
        for part in parents:
            node = node[part]
        node.pop(key, None)
    return cfg


def _without_check_seg_map(pipeline):
    return [t for t in pipeline if t['type'] != 'CheckSegMap']


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader',
           'val_evaluator', 'test_evaluator')
# (model base, dataset base) of OpenMMLab that each family inherits, and
# what our configs change in them (besides the backbone)
STOCK = {
    'mask-rcnn': ('mmdet::_base_/models/mask-rcnn_r50_fpn.py',
                  'mmdet::_base_/datasets/coco_instance.py'),
    'gfl': ('mmdet::gfl/gfl_r50_fpn_1x_coco.py',
            'mmdet::_base_/datasets/coco_detection.py'),
    'upernet': ('mmseg::_base_/models/upernet_swin.py',
                'mmseg::_base_/datasets/ade20k.py'),
}
MODEL_CHANGES = {
    'mask-rcnn': ('neck.in_channels', ),
    'gfl': ('neck.in_channels', 'neck.start_level'),
    'upernet': ('data_preprocessor.size', 'decode_head.num_classes',
                'auxiliary_head.num_classes', 'test_cfg',
                'decode_head.in_channels', 'auxiliary_head.in_channels'),
}
DATA_CHANGES = {
    # epoch-based training: no persistent workers (exact resume)
    'mask-rcnn': ('train_dataloader.collate_fn',
                  'train_dataloader.persistent_workers'),
    'gfl': ('train_dataloader.collate_fn', 'train_dataloader.batch_sampler',
            'train_dataloader.persistent_workers',
            'train_dataloader.dataset.pipeline',
            'val_dataloader.dataset.pipeline',
            'test_dataloader.dataset.pipeline'),
    'upernet': ('train_dataloader.collate_fn', 'train_dataloader.batch_size'),
}


@pytest.mark.parametrize('path', sorted(DET.glob('*_ummae-pre_*.py')) +
                         sorted(SEG.glob('*_ummae-pre_*.py')),
                         ids=lambda p: p.stem)
def test_paper_configs_are_openmmlabs_but_the_backbone(path):
    """The resolved model and data of each paper config are mmdet's or
    mmseg's own bases except the backbone and the changes the configs
    state (FPN input widths; GFL's first FPN level; ADE20K's classes, input
    size and slide inference; the training collate function and batch
    size; the 3x and LSJ pipelines; CheckSegMap in the ADE20K
    pipelines)."""
    family = path.name.split('_')[0]
    model_base, data_base = STOCK[family]
    cfg = plain_config(Config.fromfile(str(path)).to_dict())
    stock_model = plain_config(get_config(model_base).model.to_dict())
    stock_data = plain_config(get_config(data_base).to_dict())

    assert cfg['model']['backbone']['type'].startswith('mmpretrain.UM')
    changes = ('backbone', ) + MODEL_CHANGES[family]
    assert _drop(cfg['model'], *changes) == _drop(stock_model, *changes)

    data = {k: cfg[k] for k in LOADERS}
    stock = {k: stock_data[k] for k in LOADERS}
    changes = DATA_CHANGES[family]
    if '3x' in path.name:  # mmdet's Swin 3x augmentation
        changes += ('train_dataloader.dataset.pipeline', )
    if family == 'upernet':
        for loader in LOADERS[:3]:
            pipeline = data[loader]['dataset']['pipeline']
            data[loader]['dataset']['pipeline'] = _without_check_seg_map(
                pipeline)
    assert _drop(data, *changes) == _drop(stock, *changes)


@pytest.mark.parametrize('path', sorted(SEG.glob('*.py')),
                         ids=lambda p: p.stem)
def test_seg_pipelines_check_label_maps(path):
    """Every ADE20K pipeline of the mmseg configs checks the label map
    right after loading it, against the decode head's classes."""
    cfg = Config.fromfile(str(path))
    classes = cfg.model.decode_head.num_classes
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        steps = cfg[loader].dataset.pipeline
        types = [t.type for t in steps]
        at = types.index('LoadAnnotations')
        assert steps[at + 1] == dict(type='CheckSegMap',
                                     num_classes=classes), loader
        assert types.count('CheckSegMap') == 1


# ---------------------------------------------------------- Runner passes
class _ValOutputs(Hook):
    """Keeps every prediction the validation loop hands to the evaluator."""

    def __init__(self):
        self.outputs = []

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self.outputs.extend(outputs)


def _run_one_step(cfg, work_dir):
    """Train one iteration and evaluate with mmengine's Runner; the
    validation predictions are kept in ``runner.val_outputs``."""
    cfg.work_dir = str(work_dir)
    cfg.log_level = 'WARNING'
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
    runner = Runner.from_cfg(cfg)
    recorder = _ValOutputs()
    runner.register_hook(recorder)
    runner.train()
    runner.val_outputs = recorder.outputs
    return runner


def _assert_one_adamw_step(backbone, state, lr, wd=0.05):
    """Each backbone weight moved from the checkpoint by one AdamW step of
    ``lr``: at most lr * (1 + wd |w|), and about lr where it had a
    gradient (Adam's first step is lr * sign(grad))."""
    moved = []
    for k, v in backbone.state_dict().items():
        if k not in state or not k.startswith('stages.'):
            continue
        delta = (v - state[k]).abs()
        assert (delta <= lr * (1 + wd * state[k].abs()) * 1.01 +
                1e-9).all(), k
        moved.append((delta > 0.5 * lr).float().mean().item())
    assert np.mean(moved) > 0.9


def test_mask_rcnn_demo_config_trains_and_evaluates(demo_data, swin_ckpt,
                                                    tmp_path):
    cfg = _det_config(
        DET / 'mask-rcnn_swin-mini_demo.py', 'swin', swin_ckpt['converted'],
        **{'train_dataloader.dataset.indices': 4,
           'val_dataloader.dataset.indices': 4,
           'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1})
    assert cfg.model.roi_head.bbox_head.num_classes == 3
    runner = _run_one_step(cfg, tmp_path)
    model = runner.model
    assert isinstance(model.roi_head.bbox_roi_extractor.roi_layers[0],
                      mmcv.ops.RoIAlign)
    assert runner.iter == 1
    lr = runner.message_hub.get_scalar('train/lr').current()
    assert lr == pytest.approx(5e-4 * 0.01)  # first warm-up iteration
    _assert_one_adamw_step(model.backbone, swin_ckpt['state'], lr)
    metrics = runner.val_loop.evaluator.metrics[0]
    assert type(metrics).__name__ == 'CocoMetric'
    assert metrics.metrics == ['bbox', 'segm']
    # The evaluator saw one prediction per val image, boxes and full-size
    # masks; the logged mAPs are what a fresh CocoMetric makes of them.
    preds = runner.val_outputs
    assert len(preds) == 4
    for pred in preds:
        inst = pred.pred_instances
        assert inst.bboxes.shape == (len(inst.labels), 4)
        assert tuple(inst.masks.shape[1:]) == tuple(pred.ori_shape)
    fresh = copy.deepcopy(metrics)
    fresh.results = []
    fresh.process({}, [p.to_dict() for p in preds])
    expected = fresh.evaluate(len(preds))
    scores = runner.message_hub.log_scalars
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50'):
        assert scores[f'val/coco/{key}'].current() == pytest.approx(
            expected[f'coco/{key}']), key


def test_upernet_demo_config_trains_and_evaluates(demo_data, pvt_ckpt,
                                                  tmp_path):
    pvt = dict(_delete_=True, type='mmpretrain.UMPVT', arch=TINY_PVT,
               sr_ratios=(8, 4, 2, 1), learnable_pos_embed=True,
               pretrain_img_size=256, out_indices=(0, 1, 2, 3),
               init_cfg=dict(type='Pretrained',
                             checkpoint=pvt_ckpt['full'],
                             prefix='backbone.'))
    cfg = Config.fromfile(str(SEG / 'upernet_swin-mini_demo.py'))
    cfg.merge_from_dict({
        'model.backbone': pvt,
        'model.decode_head.in_channels': PVT_DIMS,
        'model.auxiliary_head.in_channels': PVT_DIMS[2],
        'val_dataloader.dataset.indices': 2,
        'train_cfg.max_iters': 1, 'train_cfg.val_interval': 1})
    runner = _run_one_step(cfg, tmp_path)
    assert runner.iter == 1
    bb = runner.model.backbone
    assert isinstance(bb, UMPVT) and bb.sr_ratios == [8, 4, 2, 1]
    lr = runner.message_hub.get_scalar('train/lr').current()
    assert lr == pytest.approx(5e-4 * 0.01)
    _assert_one_adamw_step(bb, pvt_ckpt['state'], lr)
    assert runner.model.test_cfg == dict(mode='whole')  # demo only
    # One full-size prediction per val image; the logged mIoU is mmseg's
    # IoUMetric over exactly these predictions and their label maps.
    preds = runner.val_outputs
    assert len(preds) == 2
    for pred in preds:
        assert pred.pred_sem_seg.data.shape[1:] == \
            pred.gt_sem_seg.data.shape[1:]
    from mmseg.evaluation import IoUMetric
    fresh = IoUMetric(iou_metrics=['mIoU'])
    fresh.dataset_meta = runner.val_dataloader.dataset.metainfo
    fresh.process({}, [p.to_dict() for p in preds])
    expected = fresh.evaluate(len(preds))['mIoU']
    miou = runner.message_hub.log_scalars['val/mIoU'].current()
    assert miou == pytest.approx(expected)


# ------------------------------------------------------------ layer decay
def _depth_scales(decay, depths, names):
    """Expected lr scale per parameter name, by hand: stem at depth 0,
    block j of stage i at sum(depths[:i]) + j + 1, a later stage's
    downsampling with its first block (as the reference), output norms,
    neck and heads at the top."""
    top = sum(depths) + 1
    out = {}
    for name in names:
        parts = name.split('.')
        if parts[0] != 'backbone' or parts[1].startswith('norm'):
            depth = top
        elif parts[1] != 'stages':
            depth = 0
        elif parts[3] == 'blocks':
            depth = sum(depths[:int(parts[2])]) + int(parts[4]) + 1
        else:
            stage = int(parts[2])
            depth = sum(depths[:stage]) + (stage > 0)
        out[name] = decay**(top - depth)
    return out


@pytest.mark.parametrize('path,family', [
    (DET / 'mask-rcnn_swin-tiny-w16_ummae-pre_fpn_8xb2-1x_coco.py', 'swin'),
    (SEG / 'upernet_pvt-small_ummae-pre_8xb2-160k_ade20k-512x512.py', 'pvt'),
], ids=['mask-rcnn_swin', 'upernet_pvt'])
def test_layer_decay_option(path, family, swin_ckpt, pvt_ckpt):
    ckpt = (swin_ckpt if family == 'swin' else pvt_ckpt)['converted']
    build = _det_config if family == 'swin' else _seg_config
    default = build(path, family, ckpt)
    assert default.optim_wrapper.constructor == \
        'mmpretrain.DenseLayerDecayOptimWrapperConstructor'
    assert default.optim_wrapper.paramwise_cfg.layer_decay_rate == 1.0
    cfg = build(path, family, ckpt, **{
        'optim_wrapper.paramwise_cfg.layer_decay_rate': 0.5})
    model = _build(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g['params'][0])]: g
              for g in wrapper.optimizer.param_groups}
    assert set(groups) == set(names.values())
    expected = _depth_scales(0.5, [1, 1, 1, 1], groups)
    for name, group in groups.items():
        assert group['lr'] == pytest.approx(1e-4 * expected[name]), name
    stage1 = 'backbone.stages.1.blocks.0.' + (
        'attn.qkv.weight' if family == 'swin' else 'attn.q.weight')
    assert groups[stage1]['lr'] == pytest.approx(1e-4 * 0.5**3)
    head = [n for n in groups if not n.startswith('backbone.')][0]
    assert groups[head]['lr'] == pytest.approx(1e-4)
    # mmpretrain's own constructor resolves from this scope with its
    # prefix, but asks the whole model for get_layer_depth, which detectors
    # and segmentors lack: why the configs use the Dense... one
    plain = dict(
        cfg.optim_wrapper,
        constructor='mmpretrain.LearningRateDecayOptimWrapperConstructor')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        with pytest.raises(NotImplementedError, match='get_layer_depth'):
            build_optim_wrapper(model, plain)
        with pytest.raises(TypeError, match='mmumae backbone'):
            build_optim_wrapper(torch.nn.Linear(2, 2), cfg.optim_wrapper)
    # no weight decay on norms, biases, position embedding, mask token
    for name, group in groups.items():
        flat = group['params'][0].ndim == 1 or name in (
            'backbone.pos_embed', 'backbone.mask_token')
        assert group['weight_decay'] == (0. if flat else 0.05), name


# ------------------------------------------------------------ freezing
def test_frozen_stages_inside_mask_rcnn(demo_data, swin_ckpt):
    cfg = _det_config(
        DET / 'mask-rcnn_swin-mini_demo.py', 'swin', swin_ckpt['converted'],
        **{'model.backbone.frozen_stages': 1})
    torch.manual_seed(0)
    model = _build(cfg)
    bb = model.backbone
    _assert_loaded(bb, swin_ckpt['state'])  # loading keeps the freeze
    frozen_prefixes = ('patch_embed.', 'patch_norm.', 'mask_token',
                       'stages.0.', 'stages.1.', 'norm0.', 'norm1.')
    frozen = {n for n, _ in bb.named_parameters()
              if n.startswith(frozen_prefixes)}
    assert frozen and all(not p.requires_grad
                          for n, p in bb.named_parameters() if n in frozen)

    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        batch = pseudo_collate([dataset[i] for i in (1, 2)])
        model.train()
        data = model.data_preprocessor(batch, training=True)
        losses = model.loss(data['inputs'], data['data_samples'])
        total, _ = model.parse_losses(losses)
    # the detector's train() reaches the backbone: frozen parts stay eval
    assert model.training and bb.stages[2].training
    assert not bb.stages[0].training and not bb.stages[1].training
    assert not bb.patch_norm.training
    total.backward()
    for name, p in bb.named_parameters():
        if name in frozen:
            assert p.grad is None, name
        elif name != 'mask_token':
            assert p.grad is not None and p.grad.abs().sum() > 0, name

    # an optimizer step over the whole detector leaves them untouched
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                    lr=0.1).step()
    after = bb.state_dict()
    for k in before:
        if k.startswith(frozen_prefixes):
            assert torch.equal(after[k], before[k]), k
    assert not torch.equal(after['stages.3.blocks.0.attn.qkv.weight'],
                           before['stages.3.blocks.0.attn.qkv.weight'])


# --------------------------------------------------------------- pipelines
@pytest.mark.parametrize('name,check', [
    ('mask-rcnn_swin-tiny-w16_ummae-pre_fpn_8xb2-1x_coco.py',
     lambda h, w: min(h, w) == 800 and max(h, w) <= 1333),
    ('mask-rcnn_swin-tiny-w16_ummae-pre_fpn_8xb2-ms-crop-3x_coco.py',
     lambda h, w: 480 <= min(h, w) <= 800 and max(h, w) <= 1333),
    ('gfl_swin-tiny-w16_ummae-pre_fpn_8xb2-lsj-amp-coslr-25e_'
     'coco-1024px.py', lambda h, w: max(h, w) <= 1024),
])
def test_detection_train_pipelines_on_demo_images(name, check, demo_data,
                                                  demo_gen):
    """The paper configs' training augmentation on demo COCO images (at
    most 320 px): sizes within each recipe's range, boxes inside."""
    from mmdet.registry import DATASETS
    cfg = Config.fromfile(str(DET / name))
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': str(demo_data / 'coco') + '/',
        'train_dataloader.dataset.metainfo': dict(
            classes=demo_gen.COCO_CLASSES)})
    np.random.seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        for i in range(4):
            sample = dataset[i]
            h, w = sample['inputs'].shape[-2:]
            assert check(h, w), (h, w)
            boxes = sample['data_samples'].gt_instances.bboxes.tensor
            assert ((boxes[:, 2:] <= torch.tensor([w, h]) + 1e-3).all())


# ----------------------------------------------------------------- recipes
def _common_recipe(cfg, family):
    """AdamW lr 1e-4, wd 0.05 without decay on flat tensors, layer decay
    off, drop path 0.1, the dense geometry."""
    optim = cfg.optim_wrapper.optimizer
    assert (optim.type, optim.lr, optim.weight_decay) == ('AdamW', 1e-4,
                                                          0.05)
    assert tuple(optim.betas) == (0.9, 0.999)
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert paramwise.layer_decay_rate == 1.0
    assert paramwise.norm_decay_mult == paramwise.bias_decay_mult == 0.
    assert paramwise.custom_keys.pos_embed.decay_mult == 0.
    backbone = cfg.model.backbone
    assert backbone.drop_path_rate == 0.1
    if family == 'swin':
        assert (backbone.arch, backbone.window_size) == ('tiny', 16)
    else:
        assert backbone.arch == 'small'
        assert tuple(backbone.sr_ratios) == (8, 4, 2, 1)
    assert 8 * cfg.train_dataloader.batch_size == 16


@pytest.mark.parametrize('path', sorted(DET.glob('*_ummae-*.py')) + sorted(
    SEG.glob('*_ummae-*.py')), ids=lambda p: p.name.split('_8xb2')[0])
def test_downstream_recipes(path):
    cfg = Config.fromfile(str(path))
    family = 'swin' if 'swin' in path.name else 'pvt'
    _common_recipe(cfg, family)
    sched = [(s.type, s.get('end')) for s in cfg.param_scheduler]
    if path.name.startswith('upernet'):
        assert cfg.train_cfg.max_iters == 160000
        assert sched == [('LinearLR', 1500), ('PolyLR', 160000)]
        assert cfg.model.test_cfg.stride == (341, 341)
        crop = [t for t in cfg.train_pipeline if t.type == 'RandomCrop']
        assert crop[0].crop_size == (512, 512)
    elif path.name.startswith('gfl'):
        assert cfg.train_cfg.max_epochs == 25
        assert sched == [('LinearLR', 2000), ('CosineAnnealingLR', 25)]
        assert cfg.param_scheduler[1].eta_min_ratio == 0.01
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        resize = cfg.train_pipeline[2]
        assert resize.ratio_range == (0.1, 2.0)
        assert resize.scale == cfg.train_pipeline[3].crop_size == (1024,
                                                                   1024)
        # FPN from the second stage, extra convs on its outputs (P3-P7)
        assert tuple(cfg.model.backbone.out_indices) == (1, 2, 3)
        assert cfg.model.neck.add_extra_convs == 'on_output'
    else:
        epochs = 36 if '3x' in path.name else 12
        assert cfg.train_cfg.max_epochs == epochs
        assert sched == [('LinearLR', 1000), ('MultiStepLR', epochs)]
        assert tuple(cfg.model.backbone.out_indices) == (0, 1, 2, 3)
