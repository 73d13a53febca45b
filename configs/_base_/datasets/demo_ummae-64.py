# Tiny ImageNet-format demo data for UM-MAE on a CPU: data/demo/imagenet
# (train/<class>/*.JPEG and meta/train.txt), 64-px crops, Uniform Masking on
# the 4x4 grid of 16-px mask patches, 8 images per batch.
_base_ = ['./imagenet_bs512_ummae-256.py']

data_root = 'data/demo/imagenet/'

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
        type='UniformMaskGenerator',
        input_size=64,
        mask_patch_size=16,
        mask_ratio=0.75,
        sm_ratio=0.25),
    dict(type='PackInputs', algorithm_keys=['mask', 'sm_mask']),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
