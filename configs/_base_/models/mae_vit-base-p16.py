# mmpretrain's stock MAE on ViT-B/16 at 224 px, as shipped (init_cfg
# included): random sampling of 25% of the patches inside MAEViT, 8-block
# decoder, norm_pix MSE.
_base_ = ['mmpretrain::_base_/models/mae_vit-base-p16.py']
