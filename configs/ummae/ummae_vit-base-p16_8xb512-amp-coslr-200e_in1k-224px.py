# UM-MAE on a plain ViT-B/16 at 224 px (14x14 grid, SM 0.25), 200 epochs,
# MAE's 8-block decoder (paper: FT top-1 82.88, the same as random
# sampling: configs/ummae/mae_vit-base-p16_8xb512-amp-coslr-200e_in1k-224.py).
_base_ = [
    '../_base_/datasets/imagenet_bs512_ummae-256.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
]
img_size = 224

model = dict(
    type='UMMAE',
    backbone=dict(type='UMMAEViT', arch='b', img_size=img_size, patch_size=16),
    neck=dict(
        type='UMMAEPretrainDecoder',
        in_channels=768,
        embed_dims=512,
        depth=8,
        num_heads=16,
        upscale=1,
        input_size=img_size,
        patch_size=16),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='UniformMaskGenerator',
        input_size=img_size,
        mask_patch_size=16,
        mask_ratio=0.75,
        sm_ratio=0.25),
    dict(type='PackInputs', algorithm_keys=['mask', 'sm_mask']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
