# ImageNet-1K for UM-MAE on ViT-B/16: the 256-px UM-MAE pipeline at 224 px
# (14x14 grid of 16-px mask patches, US 75% + SM 25%).
_base_ = ['./imagenet_bs512_ummae-256.py']

img_size = 224
train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
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
        sm_ratio=0.25),
    dict(type='PackInputs', algorithm_keys=['mask', 'sm_mask']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
