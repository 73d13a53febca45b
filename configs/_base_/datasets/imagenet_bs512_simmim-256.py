# ImageNet-1K for the SimMIM baseline: the UM-MAE data pipeline with 75% of
# the 16-px mask patches chosen at random (full 256-px input to the encoder).
# 512 images per GPU, i.e. a total batch of 4096 on 8 GPUs.
_base_ = ['./imagenet_bs512_ummae-256.py']

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=256,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomPatchMaskGenerator',
        input_size=256,
        mask_patch_size=16,
        mask_ratio=0.75),
    dict(type='PackInputs', algorithm_keys=['mask']),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
