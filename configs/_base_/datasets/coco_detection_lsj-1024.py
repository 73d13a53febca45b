# mmdet's COCO detection (boxes only, bbox mAP) with large-scale jitter at
# 1024 px, the UM-MAE reference's detection recipe: resize to 1024 x
# [0.1, 2.0] keeping the aspect ratio, a 1024x1024 crop, flip (the training
# pipeline of mmdet's common/lsj-100e_coco-detection.py, without its
# RepeatDataset); test: longer side 1024. Images are not grouped by aspect
# ratio (all crops are square). Training collate as coco_instance.py.
_base_ = ['mmdet::_base_/datasets/coco_detection.py']
image_size = (1024, 1024)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.1, 2.0),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    persistent_workers=False,  # exact resume (ExactResumeHook)
    batch_sampler=None,
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
