# UM-MAE Swin-T, 200 epochs on ImageNet-1K at 256 px (paper: FT top-1 82.04).
_base_ = [
    '../_base_/models/ummae_swin-tiny.py',
    '../_base_/datasets/imagenet_bs512_ummae-256.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
]
