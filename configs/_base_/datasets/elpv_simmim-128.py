# ELPV for the SimMIM baseline: the UM-MAE pre-training data
# (elpv_ummae-128.py) with 75% of the 16-px patches masked at random on the
# full 128-px image.
_base_ = ['./elpv_ummae-128.py']

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=128,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25],
        direction=['horizontal', 'vertical']),
    dict(
        type='RandomPatchMaskGenerator',
        input_size=128,
        mask_patch_size=16,
        mask_ratio=0.75),
    dict(type='PackInputs', algorithm_keys=['mask']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
