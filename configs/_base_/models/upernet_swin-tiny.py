# mmseg's UperNet (+ FCN auxiliary head on stage 3, SyncBN) on a UM-MAE
# Swin-T in its dense mode (window 16, drop path 0.1), for ADE20K: 150
# classes, 512x512 inputs, slide inference with 512x512 windows at stride
# 341. The top-level config sets `backbone.init_cfg` to the checkpoint it
# starts from.
_base_ = ['mmseg::_base_/models/upernet_swin.py']
data_preprocessor = dict(size=(512, 512))
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.UMSwinTransformer',
        arch='tiny',
        window_size=16,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        with_cp=False),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
