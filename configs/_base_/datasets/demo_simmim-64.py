# Tiny ImageNet-format demo data for the SimMIM baseline on a CPU:
# data/demo/imagenet, 64-px crops, 75% of the 16 mask patches at random,
# 8 images per batch.
_base_ = ['./demo_ummae-64.py']

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=64,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomPatchMaskGenerator',
        input_size=64,
        mask_patch_size=16,
        mask_ratio=0.75),
    dict(type='PackInputs', algorithm_keys=['mask']),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
