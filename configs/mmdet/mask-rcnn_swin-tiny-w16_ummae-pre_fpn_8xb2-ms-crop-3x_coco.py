# Mask R-CNN + FPN, 3x schedule (36 epochs, multi-scale + crop as
# mmdet's Swin configs),
# on a Swin-T started directly from UM-MAE pre-training (200 epochs,
# ImageNet-1K): encoder loaded, decoder dropped. The checkpoint is
# tools/model_converters/ummae_to_backbone.py's output for the
# pre-training checkpoint (or that checkpoint itself: same `backbone.`
# prefix); see docs/transfer.md. Another file: --cfg-options
# model.backbone.init_cfg.checkpoint=PATH.
_base_ = [
    '../_base_/models/mask-rcnn_swin-tiny_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_adamw_3x.py',
    '../_base_/default_runtime_det.py',
]
checkpoint = 'checkpoints/ummae_swin-tiny_200e_backbone.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))
