# GFL, the UM-MAE reference's detection recipe (25 epochs, large-
# scale jitter 0.1-2.0 with 1024-px crops, AdamW, cosine, AMP),
# on a PVT-S started directly from UM-MAE pre-training (200 epochs,
# ImageNet-1K): encoder loaded, decoder dropped. The checkpoint is
# tools/model_converters/ummae_to_backbone.py's output for the
# pre-training checkpoint (or that checkpoint itself: same `backbone.`
# prefix); see docs/transfer.md. Another file: --cfg-options
# model.backbone.init_cfg.checkpoint=PATH.
_base_ = [
    '../_base_/models/gfl_pvt-small_fpn.py',
    '../_base_/datasets/coco_detection_lsj-1024.py',
    '../_base_/schedules/det_adamw_cos-25e.py',
    '../_base_/default_runtime_det.py',
]
checkpoint = 'checkpoints/ummae_pvt-small_200e_backbone.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))
