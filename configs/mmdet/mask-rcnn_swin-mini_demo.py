# Demo: Mask R-CNN on the bundled demo COCO set (data/demo/coco: 48 train, 16
# val images of 256x320 or 320x256, 3 classes) with the small Swin of
# configs/ummae/ummae_swin-mini_demo.py, on a CPU (37 s on 2 idle cores,
# docs/transfer.md): native size, flip, 6 epochs of 12 iterations at batch 4,
# narrow heads, COCO bbox and segm mAP on the val split at the end. Starts from
# the newest demo pre-training checkpoint (latest.pth, linked by
# tools/run_demo.sh); tools/run_transfer_demo.py passes the fine-tuned one, or
# random init (`model.backbone.init_cfg=None`). Everything else is the Swin-T
# 1x config (mmdet's Mask R-CNN, COCO pipelines and metric, AdamW with the
# weight-decay exemptions, the runtime).
_base_ = ['./mask-rcnn_swin-tiny-w16_ummae-pre_fpn_8xb2-1x_coco.py']
data_root = 'data/demo/coco/'
classes = ('person', 'cat', 'cup')
checkpoint = 'work_dirs/ummae_swin-mini_demo/latest.pth'
c = 64  # FPN and head width

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8]),
        window_size=8,
        init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=c),
    rpn_head=dict(in_channels=c, feat_channels=c),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=c),
        bbox_head=dict(in_channels=c, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=c),
        mask_head=dict(
            num_convs=2, in_channels=c, conv_out_channels=c, num_classes=3)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(max_per_img=20)))

_scale = (256, 256)  # 0.8x the demo images' size
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=dict(classes=classes),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# a short schedule with a larger lr than the paper's (small batch, few
# steps); AdamW and the weight-decay exemptions as the paper configs
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=20),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=True,
         begin=0, end=max_epochs, T_max=max_epochs,
         convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=5e-4))
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=6),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0)
