# Demo: fine-tune the small Swin pre-trained by
# configs/ummae/ummae_swin-mini_demo.py (tools/run_demo.sh writes it to
# work_dirs/ummae_swin-mini_demo/, with latest.pth linked to its newest
# checkpoint, whatever the number of epochs) as a 10-class classifier on
# the bundled demo photos (data/demo/imagenet: 320 train, 80 val images) on
# a CPU (19 s on 2 idle cores, docs/transfer.md; several times that on
# shared cores): 128 px, window 8 (stage maps 32-16-8-4), 6
# epochs of 20 iterations at batch 16, top-1 on the val split after epochs
# 3 and 6. The recipe of the ImageNet configs (RandAugment, random
# erasing, Mixup/CutMix, label smoothing, layer-wise lr decay 0.85) at the
# demo's scale. Another
# checkpoint (e.g. after a pre-training run by hand with tools/train.py,
# which makes no latest.pth):
# --cfg-options model.backbone.init_cfg.checkpoint=PATH.
_base_ = [
    '../_base_/models/finetune_swin-tiny.py',
    '../_base_/datasets/imagenet_bs128_finetune-256px.py',
    '../_base_/schedules/finetune_adamw_coslr-100e.py',
    '../_base_/default_runtime.py',
]
img_size = 128
num_classes = 10
pretrained = 'work_dirs/ummae_swin-mini_demo/latest.pth'

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8]),
        window_size=8,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    head=dict(num_classes=num_classes, in_channels=256))
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    {{_base_.rand_augment}},
    {{_base_.random_erasing}},
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=int(img_size / 0.875),
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
demo_classes = ('astronaut', 'camera', 'chelsea', 'coffee', 'coins',
                'hubble_deep_field', 'immunohistochemistry', 'moon',
                'retina', 'rocket')
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    pin_memory=False,
    drop_last=True,
    dataset=dict(
        data_root='data/demo/imagenet/',
        metainfo=dict(classes=demo_classes),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=40,
    num_workers=1,
    pin_memory=False,
    dataset=dict(
        data_root='data/demo/imagenet/',
        metainfo=dict(classes=demo_classes),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# fp32 (a CPU), a larger lr for the small batch, layer-wise lr decay 0.85.
optim_wrapper = dict(
    optimizer=dict(lr=2e-3), paramwise_cfg=dict(layer_decay_rate=0.85))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=5, eta_min=1e-5, by_epoch=True,
         begin=1, end=6, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=6, val_interval=3)
auto_scale_lr = dict(base_batch_size=16)

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=3, max_keep_ckpts=1, save_best='auto'))
randomness = dict(seed=0, diff_rank_seed=True)
