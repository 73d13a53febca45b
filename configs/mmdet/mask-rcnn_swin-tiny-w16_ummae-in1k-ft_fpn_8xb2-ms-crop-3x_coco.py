# As the `ummae-pre` config of the same name, but started from the
# intermediate ImageNet-1K fine-tuned checkpoint (pre-train -> 100-epoch
# IN-1K fine-tune with configs/finetune -> this), which pyramid ViTs need
# more than plain ViTs (paper): ummae_to_backbone.py's output for the
# fine-tuned classifier; see docs/transfer.md.
_base_ = [
    './mask-rcnn_swin-tiny-w16_ummae-pre_fpn_8xb2-ms-crop-3x_coco.py'
]
checkpoint = 'checkpoints/ummae_swin-tiny_200e_in1k-ft_backbone.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=checkpoint)))
