# UM-MAE on a plain ViT-B/16 at 224 px (14x14 grid, SM 0.25), 200 epochs,
# MAE's 8-block decoder (paper: FT top-1 82.88, the same as random
# sampling: mae_vit-base-p16_8xb512-amp-coslr-200e_in1k-224px.py here).
_base_ = [
    '../_base_/models/ummae_vit-base-p16.py',
    '../_base_/datasets/imagenet_bs512_ummae-224.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
]
