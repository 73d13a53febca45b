# ImageNet-1K classifier on UMSwinTransformer for fine-tuning (docs/method.md):
# window 16 (the dense geometry), drop path 0.1, global average pooling,
# linear head with label smoothing 0.1, Mixup 0.8 / CutMix 1.0.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='UMSwinTransformer',
        arch='tiny',
        window_size=16,
        drop_path_rate=0.1,
        out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=2e-5),
        cal_acc=False),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
