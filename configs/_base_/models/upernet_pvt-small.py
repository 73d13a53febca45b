# UperNet on a UM-MAE PVT-S (sr 8-4-2-1, learnable stage-1 position
# embedding resized from 256 px, drop path 0.1); heads as the Swin-T base.
_base_ = ['./upernet_swin-tiny.py']
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
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
