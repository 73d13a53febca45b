# UM-MAE Swin-L, 800 epochs (40 warm-up) at 256 px, 8-block decoder
# (paper: FT top-1 85.2).
_base_ = [
    '../_base_/models/ummae_swin-tiny.py',
    '../_base_/datasets/imagenet_bs512_ummae-256.py',
    '../_base_/schedules/ummae_adamw_coslr-800e.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(arch='large'),
    neck=dict(in_channels=1536, depth=8))
