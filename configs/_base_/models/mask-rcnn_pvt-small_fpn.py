# Mask R-CNN + FPN on a UM-MAE PVT-S (dense mode: sr ratios 8-4-2-1, the
# stage-1 position embedding learnable and resized from its 256-px
# pre-training grid, drop path 0.1). Heads as the Swin-T base.
_base_ = ['./mask-rcnn_swin-tiny_fpn.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.UMPVT',
        arch='small',
        sr_ratios=(8, 4, 2, 1),
        learnable_pos_embed=True,
        pretrain_img_size=256,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        with_cp=False),
    neck=dict(in_channels=[64, 128, 320, 512]))
