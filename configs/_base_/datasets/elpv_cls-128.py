# ELPV functional-vs-defective classification at 128 px on a CPU
# (data/elpv from tools/dataset_converters/prepare_elpv.py; any folder with
# train/, val/ and test/ of class sub-folders works the same way). A recipe
# for a small, imbalanced two-class set: mild augmentation only (a
# RandomResizedCrop that keeps at least 60% of the cell, so a defect near the
# edge mostly stays in, and both flips); no RandAugment, random erasing,
# Mixup or CutMix, which wash out the few defect pixels and made the
# ImageNet-style demo recipe collapse to the majority class. Evaluation
# resizes the whole cell to 128 px (no centre crop: defects sit anywhere).
# val/ is for choosing hyper-parameters, test/ for reporting.
data_root = 'data/elpv/'
img_size = 128
num_classes = 2
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.6, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(
        type='RandomFlip',
        prob=[0.25, 0.25],
        direction=['horizontal', 'vertical']),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='Resize',
        scale=(img_size, img_size),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='PackInputs'),
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
val_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=True,
    pin_memory=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        pipeline=test_pipeline))
# the same loader on test/
test_dataloader = dict(
    val_dataloader, dataset=dict(val_dataloader['dataset'],
                                 data_prefix='test'))
# accuracy, and macro precision / recall (= balanced accuracy) / F1
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='SingleLabelMetric', average='macro'),
]
test_evaluator = val_evaluator
