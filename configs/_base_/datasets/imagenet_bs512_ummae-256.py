# ImageNet-1K for UM-MAE pre-training: 256-px RandomResizedCrop, flip and
# Uniform Masking (US 75% + SM 25%) on 16-px mask patches.
# 512 images per GPU, i.e. the reference total batch of 4096 on 8 GPUs.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

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
        type='UniformMaskGenerator',
        input_size=256,
        mask_patch_size=16,
        sm_ratio=0.25),
    dict(type='PackInputs', algorithm_keys=['mask', 'sm_mask']),
]

train_dataloader = dict(
    batch_size=512,
    num_workers=8,
    persistent_workers=False,  # exact resume (ExactResumeHook)
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix=dict(img_path='train/'),
        pipeline=train_pipeline))
