# mmdet's Mask R-CNN + FPN (heads, 80 COCO classes, training and test
# settings as shipped) on the four stage outputs of a UM-MAE Swin-T in its
# dense mode (window 16, drop path 0.1). Only the backbone and the FPN's
# input widths differ. The top-level config sets `backbone.init_cfg` to the
# checkpoint it starts from.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.UMSwinTransformer',
        arch='tiny',
        window_size=16,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        with_cp=False),
    neck=dict(in_channels=[96, 192, 384, 768]))
