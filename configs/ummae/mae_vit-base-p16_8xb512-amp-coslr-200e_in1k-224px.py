# Reference for the ViT comparison: mmpretrain's MAE with random sampling
# (75%, no secondary masking) on ViT-B/16 at 224 px, same 200-epoch schedule
# (paper: FT top-1 82.88). The model is mmpretrain's
# `_base_/models/mae_vit-base-p16.py` as shipped, its init_cfg included.
_base_ = [
    'mmpretrain::_base_/models/mae_vit-base-p16.py',
    '../_base_/datasets/imagenet_bs512_mae-224.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
]
