# ImageNet-1K for mmpretrain's MAE at 224 px: crops and flips only (MAEViT
# draws its random mask itself).
_base_ = ['./imagenet_bs512_ummae-256.py']

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
