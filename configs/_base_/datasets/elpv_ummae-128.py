# ELPV solar-cell images for UM-MAE pre-training on a CPU: the train split of
# data/elpv (tools/dataset_converters/prepare_elpv.py; labels are not used),
# read by mmpretrain's CustomDataset from the folder, 128-px
# RandomResizedCrop of the 300-px grayscale cells (loaded as 3 equal
# channels), horizontal and vertical flips (a cell looks the same mirrored),
# Uniform Masking (US 75% + SM 25%) on the 8x8 grid of 16-px patches.
# 32 images per batch.
data_root = 'data/elpv/'
img_size = 128
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25],
        direction=['horizontal', 'vertical']),
    dict(
        type='UniformMaskGenerator',
        input_size=img_size,
        mask_patch_size=16,
        sm_ratio=0.25),
    dict(type='PackInputs', algorithm_keys=['mask', 'sm_mask']),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=False,  # exact resume (ExactResumeHook)
    pin_memory=False,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline))
