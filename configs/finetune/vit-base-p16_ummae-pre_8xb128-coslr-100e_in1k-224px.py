# Fine-tune a UM-MAE pre-trained ViT-B/16 (UMVisionTransformer; mmpretrain's
# VisionTransformer has the same parameter names) on ImageNet-1K: 100 epochs
# at 224 px, average-pooled tokens, layer-wise lr decay 0.8 as the
# reference's ViT-B fine-tuning (paper: top-1 82.88). The recipe otherwise as
# the pyramids'.
_base_ = [
    '../_base_/models/finetune_swin-tiny.py',
    '../_base_/datasets/imagenet_bs128_finetune-256px.py',
    '../_base_/schedules/finetune_adamw_coslr-100e.py',
    '../_base_/default_runtime.py',
]
img_size = 224
pretrained = ('work_dirs/ummae_vit-base-p16_8xb512-amp-coslr-200e_in1k-224px/'
              'epoch_200.pth')

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionTransformer',
        arch='base',
        img_size=img_size,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=None)

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
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    paramwise_cfg=dict(layer_decay_rate=0.8))

default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
randomness = dict(seed=0, diff_rank_seed=True)
