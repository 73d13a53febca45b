# GFL on a UM-MAE Swin-T (window 16, drop path 0.1), the UM-MAE reference's
# detection model. Head, losses, assigner and test settings are those of
# mmdet's gfl/gfl_r50_fpn_1x_coco.py. mmdet has no GFL model among its
# `_base_/models`, and that file also carries mmdet's dataset, SGD schedule
# and runtime, which would clash with ours as sibling bases (mmengine
# refuses a key defined by two bases): so the model is stated here. The
# FPN starts at stage 2 with extra convs on its outputs (P3-P7), i.e.
# `start_level=1, add_extra_convs='on_output'` of a four-input FPN; the
# backbone outputs stages 2-4 only, so that no parameter (the unused stage-1
# output norm) is left without a gradient, which DistributedDataParallel
# would reject.
model = dict(
    type='GFL',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='mmpretrain.UMSwinTransformer',
        arch='tiny',
        window_size=16,
        drop_path_rate=0.1,
        out_indices=(1, 2, 3),
        with_cp=False),
    neck=dict(
        type='FPN',
        in_channels=[192, 384, 768],
        out_channels=256,
        start_level=0,
        add_extra_convs='on_output',
        num_outs=5),
    bbox_head=dict(
        type='GFLHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128]),
        loss_cls=dict(
            type='QualityFocalLoss',
            use_sigmoid=True,
            beta=2.0,
            loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        reg_max=16,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))
