# The bundled demo photos for UM-MAE on a CPU: data/demo/imagenet
# (ImageNet layout, made by tools/dataset_converters/make_demo_data.py),
# 128-px crops, Uniform Masking on the 8x8 grid of 16-px mask patches (a
# 64-px compact image), 16 images per batch.
_base_ = ['./imagenet_bs512_ummae-256.py']

data_root = 'data/demo/imagenet/'
img_size = 128

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

train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=False,  # exact resume (ExactResumeHook)
    pin_memory=False,
    drop_last=True,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
