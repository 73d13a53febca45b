# Demo: the SimMIM baseline on the same small PVT as
# configs/ummae/ummae_pvt-mini_demo.py (full grid, sr ratios 4-2-1-1).
_base_ = ['./simmim_swin-mini_demo.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UMPVT',
        arch=dict(
            embed_dims=[32, 64, 128, 256],
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4]),
        sr_ratios=(4, 2, 1, 1),
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16))
