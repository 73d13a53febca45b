# mmseg's ADE20K (data/ade/ADEChallengeData2016; random resize of 2048x512
# by [0.5, 2.0], 512x512 crop with at most 75% one class, flip, photometric
# distortion; test at 2048x512, slide inference in the model's test_cfg;
# mIoU) at 2 images per GPU (16 on 8 GPUs). The pipelines are mmseg's with
# a `CheckSegMap` after `LoadAnnotations`: a label map of another size than
# its image, or with a label outside the decode head's 150 classes (other
# than 255, ignored), stops the run naming the file. Training batches are
# lists (pseudo_collate, stated so that no launcher's default applies); the
# val/test loaders name no collate_fn and get mmengine's default, the same
# pseudo_collate: MMSegInferencer reads `test_dataloader.collate_fn` as a
# registry key (a str), which the Runner does not accept.
_base_ = ['mmseg::_base_/datasets/ade20k.py']
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(
        type='RandomResize',
        scale=(2048, 512),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_size={{_base_.crop_size}},
        cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
