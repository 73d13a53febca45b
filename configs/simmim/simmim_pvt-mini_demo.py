# Demo: the SimMIM baseline on the same small PVT as
# configs/ummae/ummae_pvt-mini_demo.py: full 128-px grid, sr ratios 4-2-2-1
# (twice the UM-MAE demo's 2-1-1-1 on its half-size compact grid, last
# stage 1, as the reference 8-4-2-1 against 4-2-1-1).
_base_ = [
    '../_base_/models/simmim_pvt-small.py',
    '../_base_/datasets/demo_simmim-128.py',
    '../_base_/schedules/demo_adamw_coslr-20e.py',
    '../_base_/demo_runtime.py',
]

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=[32, 64, 128, 256],
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4]),
        sr_ratios=(4, 2, 2, 1)),
    neck=dict(in_channels=256))
