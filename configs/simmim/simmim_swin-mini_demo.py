# Demo: the SimMIM baseline on the same small Swin as
# configs/ummae/ummae_swin-mini_demo.py (full 128-px grid, 75% of the 16-px
# patches replaced by the mask token), same data and schedule.
_base_ = ['../ummae/ummae_swin-mini_demo.py']
img_size = 128

model = dict(
    _delete_=True,
    type='SimMIM',
    backbone=dict(
        type='UMSwinTransformer',
        arch=dict(embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
        window_size=4,
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(type='SimMIMLinearDecoder', in_channels=256, encoder_stride=32),
    head=dict(
        type='SimMIMHead',
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))

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
        type='RandomPatchMaskGenerator',
        input_size=img_size,
        mask_patch_size=16,
        mask_ratio=0.75),
    dict(type='PackInputs', algorithm_keys=['mask']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# SimMIM has no reconstruct(): no figure hook.
custom_hooks = []
