# COCO instance segmentation with the multi-scale + random-crop training
# augmentation of mmdet's swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py
# (shorter side 480-800, or 400-600 then a 384-600 crop then 480-800),
# which mmdet states in that config rather than in a dataset base; test as
# coco_instance.py.
_base_ = ['./coco_instance.py']
_ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
              (608, 1333), (640, 1333), (672, 1333), (704, 1333),
              (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_ms_scales,
                  keep_ratio=True)],
            [
                dict(type='RandomChoiceResize',
                     scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop',
                     crop_type='absolute_range',
                     crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=_ms_scales,
                     keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
