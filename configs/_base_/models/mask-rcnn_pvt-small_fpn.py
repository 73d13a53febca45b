# mmdet's Mask R-CNN + FPN (heads, 80 COCO classes, training and test
# settings as shipped) on the four stage outputs of a UM-MAE PVT-S in its
# dense mode (sr ratios 8-4-2-1, the stage-1 position embedding learnable
# and resized from its 256-px pre-training grid, drop path 0.1). Only the
# backbone and the FPN's input widths differ. The top-level config sets
# `backbone.init_cfg` to the checkpoint it starts from.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
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
