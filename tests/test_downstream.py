"""UM-MAE-pretrained backbones inside real mmdet and mmseg models on CPU.

A tiny UM-MAE (Swin or PVT encoder) takes one pre-training step and is
saved as an mmengine checkpoint; a Mask R-CNN (mmdet) and an UperNet
(mmseg) load their backbone from it through ``init_cfg=Pretrained`` and
then train one step and predict on demo COCO / ADE20K images run through
the stock mmdet / mmseg pipelines and data preprocessors.
"""
import mmcv.ops
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import save_checkpoint

import mmumae  # noqa: F401  (registers the backbones in mmdet and mmseg)
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.models.backbones import UMPVT, UMSwinTransformer
from mmpretrain.structures import DataSample

# numpy 2 warns on every torch -> numpy conversion inside pycocotools and
# the OpenMMLab packages; not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings(
        'ignore:__array__ implementation:DeprecationWarning'),
    pytest.mark.filterwarnings(
        'ignore:`reduce_zero_label` will be deprecated'),
    pytest.mark.filterwarnings('ignore:``build_loss`` would be deprecated'),
]

TINY_SWIN = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4])
TINY_PVT = dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])
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
    return state


@pytest.fixture(scope='module')
def swin_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('ummae_swin') / 'pretrain.pth'
    state = _pretrain_checkpoint(
        path, dict(type='UMSwinTransformer', arch=TINY_SWIN, window_size=4),
        decoder_in=128)
    return str(path), state


@pytest.fixture(scope='module')
def pvt_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('ummae_pvt') / 'pretrain.pth'
    state = _pretrain_checkpoint(
        path, dict(type='UMPVT', arch=TINY_PVT, sr_ratios=(4, 2, 1, 1)),
        decoder_in=64)
    return str(path), state


def _backbone_state(state):
    return {k[len('backbone.'):]: v for k, v in state.items()
            if k.startswith('backbone.')}


def _assert_loaded(backbone, state):
    """Every backbone tensor of the checkpoint is loaded, under the same
    name. Pre-training outputs the last stage only, so the dense model's
    extra output norms (``norm0`` .. ``norm2``) are the only new tensors,
    left at LayerNorm's identity init."""
    expected = _backbone_state(state)
    got = backbone.state_dict()
    extra = {k for k in set(got) - set(expected)}
    assert set(expected) <= set(got)
    assert extra == {f'norm{i}.{w}' for i in range(3)
                     for w in ('weight', 'bias')}
    for k in sorted(extra):
        fill = 1. if k.endswith('weight') else 0.
        assert torch.equal(got[k], torch.full_like(got[k], fill)), k
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)


def _assert_backbone_grads(backbone, unused=()):
    """Every trainable backbone parameter got a finite gradient (the mask
    token a zero one: what DistributedDataParallel needs), and the gradients
    are not all zero."""
    no_grad, total = [], 0.
    for name, p in backbone.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            no_grad.append(name)
            continue
        assert torch.isfinite(p.grad).all(), name
        total += p.grad.abs().sum().item()
    assert sorted(no_grad) == sorted(unused)
    assert total > 0


# --------------------------------------------------------------- Mask R-CNN
def _mask_rcnn_cfg(ckpt, **backbone_kw):
    c = 16  # FPN / head width
    return dict(
        type='MaskRCNN',
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_mask=True,
            pad_size_divisor=32),
        backbone=dict(
            type='UMSwinTransformer',
            arch=TINY_SWIN,
            window_size=4,
            drop_path_rate=0.,
            out_indices=(0, 1, 2, 3),
            init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                          prefix='backbone.'),
            **backbone_kw),
        neck=dict(
            type='FPN', in_channels=[16, 32, 64, 128], out_channels=c,
            num_outs=5),
        rpn_head=dict(
            type='RPNHead',
            in_channels=c,
            feat_channels=c,
            anchor_generator=dict(
                type='AnchorGenerator',
                scales=[8],
                ratios=[0.5, 1.0, 2.0],
                strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[.0, .0, .0, .0],
                target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        roi_head=dict(
            type='StandardRoIHead',
            bbox_roi_extractor=dict(
                type='SingleRoIExtractor',
                roi_layer=dict(type='RoIAlign', output_size=7,
                               sampling_ratio=0),
                out_channels=c,
                featmap_strides=[4, 8, 16, 32]),
            bbox_head=dict(
                type='Shared2FCBBoxHead',
                in_channels=c,
                fc_out_channels=32,
                roi_feat_size=7,
                num_classes=3,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder',
                    target_means=[0., 0., 0., 0.],
                    target_stds=[0.1, 0.1, 0.2, 0.2]),
                reg_class_agnostic=False,
                loss_cls=dict(
                    type='CrossEntropyLoss', use_sigmoid=False,
                    loss_weight=1.0),
                loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
            mask_roi_extractor=dict(
                type='SingleRoIExtractor',
                roi_layer=dict(type='RoIAlign', output_size=14,
                               sampling_ratio=0),
                out_channels=c,
                featmap_strides=[4, 8, 16, 32]),
            mask_head=dict(
                type='FCNMaskHead',
                num_convs=2,
                in_channels=c,
                conv_out_channels=c,
                num_classes=3,
                loss_mask=dict(
                    type='CrossEntropyLoss', use_mask=True,
                    loss_weight=1.0))),
        train_cfg=dict(
            rpn=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.7,
                    neg_iou_thr=0.3,
                    min_pos_iou=0.3,
                    match_low_quality=True,
                    ignore_iof_thr=-1),
                sampler=dict(
                    type='RandomSampler',
                    num=64,
                    pos_fraction=0.5,
                    neg_pos_ub=-1,
                    add_gt_as_proposals=False),
                allowed_border=-1,
                pos_weight=-1,
                debug=False),
            rpn_proposal=dict(
                nms_pre=200,
                max_per_img=50,
                nms=dict(type='nms', iou_threshold=0.7),
                min_bbox_size=0),
            rcnn=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.5,
                    min_pos_iou=0.5,
                    match_low_quality=True,
                    ignore_iof_thr=-1),
                sampler=dict(
                    type='RandomSampler',
                    num=32,
                    pos_fraction=0.25,
                    neg_pos_ub=-1,
                    add_gt_as_proposals=True),
                mask_size=28,
                pos_weight=-1,
                debug=False)),
        test_cfg=dict(
            rpn=dict(
                nms_pre=100,
                max_per_img=50,
                nms=dict(type='nms', iou_threshold=0.7),
                min_bbox_size=0),
            rcnn=dict(
                # an untrained head scores ~1/4 per class; keep everything
                score_thr=0.0,
                nms=dict(type='nms', iou_threshold=0.5),
                max_per_img=10,
                mask_thr_binary=0.5)))


def _build_detector(ckpt, **backbone_kw):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(ConfigDict(_mask_rcnn_cfg(ckpt, **backbone_kw)))
    model.init_weights()
    return model


def _coco_batch(demo_data, demo_gen, indices=(1, 2)):
    """Two demo COCO train images (256x320 and 320x256) through mmdet's
    train pipeline, collated as a DataLoader would."""
    from mmdet.datasets import CocoDataset
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = CocoDataset(
            data_root=str(demo_data / 'coco'),
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            metainfo=dict(classes=demo_gen.COCO_CLASSES),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                dict(type='Resize', scale=(128, 128), keep_ratio=True),
                dict(type='PackDetInputs'),
            ])
        return pseudo_collate([dataset[i] for i in indices])


def _det_loss(model, batch):
    model.train()
    data = model.data_preprocessor(batch, training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = 0.
    for name, value in losses.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            assert torch.isfinite(v).all(), name
            if 'loss' in name:
                total = total + v.sum()
    return data, losses, total


def test_mask_rcnn_on_ummae_pretrained_swin(demo_data, demo_gen, swin_ckpt):
    ckpt, state = swin_ckpt
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = _build_detector(ckpt)
        assert isinstance(model.backbone, UMSwinTransformer)
        assert model.backbone.num_features == [16, 32, 64, 128]
        assert isinstance(model.roi_head.bbox_roi_extractor.roi_layers[0],
                          mmcv.ops.RoIAlign)
        _assert_loaded(model.backbone, state)

        batch = _coco_batch(demo_data, demo_gen)
        data, losses, total = _det_loss(model, batch)
        # both images padded to one 128x128 batch (102x128 and 128x102)
        assert data['inputs'].shape == (2, 3, 128, 128)
        for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox',
                    'loss_mask'):
            assert key in losses
        assert losses['loss_mask'].item() > 0
        total.backward()
        _assert_backbone_grads(model.backbone)
        assert model.neck.lateral_convs[0].conv.weight.grad is not None

        model.eval()
        with torch.no_grad():
            data = model.data_preprocessor(batch, training=False)
            results = model.predict(data['inputs'], data['data_samples'])
    assert len(results) == 2
    for res in results:
        pred = res.pred_instances
        n = len(pred)
        assert 0 < n <= 10
        assert pred.bboxes.shape == (n, 4)
        assert pred.labels.max() < 3 and (pred.scores >= 0).all()
        # masks are pasted back at the original image size
        assert pred.masks.shape == (n, *res.ori_shape)
        assert pred.masks.dtype == torch.bool
    assert {tuple(r.ori_shape) for r in results} == {(256, 320), (320, 256)}


def test_frozen_stages_inside_mask_rcnn(demo_data, demo_gen, swin_ckpt):
    ckpt, state = swin_ckpt
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = _build_detector(ckpt, frozen_stages=1)
        bb = model.backbone
        _assert_loaded(bb, state)  # loading keeps the freeze
        frozen_prefixes = ('patch_embed.', 'patch_norm.', 'mask_token',
                           'stages.0.', 'stages.1.', 'norm0.', 'norm1.')
        frozen = {n for n, _ in bb.named_parameters()
                  if n.startswith(frozen_prefixes)}
        assert frozen and all(not p.requires_grad
                              for n, p in bb.named_parameters()
                              if n in frozen)

        _, _, total = _det_loss(model, _coco_batch(demo_data, demo_gen))
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


# ------------------------------------------------------------------ UperNet
def _upernet_cfg(ckpt):
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size=(128, 128),
            test_cfg=dict(size_divisor=32)),
        backbone=dict(
            type='UMPVT',
            arch=TINY_PVT,
            sr_ratios=(8, 4, 2, 1),
            drop_path_rate=0.,
            out_indices=(0, 1, 2, 3),
            init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                          prefix='backbone.')),
        decode_head=dict(
            type='UPerHead',
            in_channels=[8, 16, 32, 64],
            in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6),
            channels=16,
            dropout_ratio=0.1,
            num_classes=150,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False,
                avg_non_ignore=True, loss_weight=1.0)),
        auxiliary_head=dict(
            type='FCNHead',
            in_channels=32,
            in_index=2,
            channels=8,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.1,
            num_classes=150,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False,
                avg_non_ignore=True, loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def _ade_batch(demo_data, pipeline, indices):
    from mmseg.datasets import ADE20KDataset
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = ADE20KDataset(
            data_root=str(demo_data / 'ade' / 'ADEChallengeData2016'),
            data_prefix=dict(img_path='images/training',
                             seg_map_path='annotations/training'),
            pipeline=pipeline)
        return pseudo_collate([dataset[i] for i in indices])


def test_upernet_on_ummae_pretrained_pvt(demo_data, pvt_ckpt):
    ckpt, state = pvt_ckpt
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    np.random.seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(ConfigDict(_upernet_cfg(ckpt)))
        model.init_weights()
        bb = model.backbone
        assert isinstance(bb, UMPVT)
        assert bb.sr_ratios == [8, 4, 2, 1] and bb.num_features == [8, 16,
                                                                    32, 64]
        _assert_loaded(bb, state)  # pre-trained with sr (4, 2, 1, 1)

        train = _ade_batch(demo_data, [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='RandomCrop', crop_size=(128, 128)),
            dict(type='PackSegInputs'),
        ], indices=(0, 1))
        model.train()
        data = model.data_preprocessor(train, training=True)
        assert data['inputs'].shape == (2, 3, 128, 128)
        losses = model.loss(data['inputs'], data['data_samples'])
        assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
        total = 0.
        for name, value in losses.items():
            assert torch.isfinite(value).all(), name
            if 'loss' in name:
                total = total + value
        assert losses['decode.loss_ce'].item() > 0
        total.backward()
        _assert_backbone_grads(bb)

        # Two 256x320 images, resized to 102x128, padded to 128x128 by
        # the preprocessor; the prediction comes back at 256x320.
        test = _ade_batch(demo_data, [
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(128, 128), keep_ratio=True),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='PackSegInputs'),
        ], indices=(1, 4))
        model.eval()
        with torch.no_grad():
            data = model.data_preprocessor(test, training=False)
            assert data['inputs'].shape == (2, 3, 128, 128)
            results = model.predict(data['inputs'], data['data_samples'])
    assert len(results) == 2
    for res in results:
        assert tuple(res.ori_shape) == (256, 320)
        seg = res.pred_sem_seg.data
        assert seg.shape == (1, 256, 320)
        assert seg.min() >= 0 and seg.max() < 150
        assert res.seg_logits.data.shape == (150, 256, 320)
