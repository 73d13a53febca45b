# UperNet on ADE20K (512x512 crops, 160k iterations, AdamW lr 1e-4, poly
# with 1500 warm-up iterations, layer decay 1.0, drop path 0.1, slide
# inference with 512 crops at stride 341) on a Swin-T started directly
# from UM-MAE pre-training (200 epochs, ImageNet-1K): encoder loaded,
# decoder dropped. The checkpoint is ummae_to_backbone.py's output for the
# pre-training checkpoint (or that checkpoint itself); see
# docs/transfer.md. Another file: --cfg-options
# model.backbone.init_cfg.checkpoint=PATH.
_base_ = [
    '../_base_/models/upernet_swin-tiny.py',
    '../_base_/datasets/ade20k_512.py',
    '../_base_/schedules/seg_adamw_poly-160k.py',
    '../_base_/default_runtime_seg.py',
]
checkpoint = 'checkpoints/ummae_swin-tiny_200e_backbone.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))
