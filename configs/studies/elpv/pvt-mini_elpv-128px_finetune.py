# ELPV study: fine-tune the small PVT of ummae_pvt-mini_elpv-128px.py (or of
# the SimMIM baseline, or from random init) as a functional-vs-defective
# classifier at 128 px: sr ratios 8-4-2-1 (the dense geometry), a learnable
# position embedding for 128 px, drop path 0.1, the recipe and schedule of
# swin-mini_elpv-128px_finetune.py.
_base_ = ['./swin-mini_elpv-128px_finetune.py']
img_size = 128

model = dict(
    backbone=dict(
        _delete_=True,
        type='UMPVT',
        arch=dict(
            embed_dims=[32, 64, 128, 256],
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4]),
        sr_ratios=(8, 4, 2, 1),
        learnable_pos_embed=True,
        pretrain_img_size=img_size,
        drop_path_rate=0.1,
        out_indices=(3, ),
        init_cfg=None))
