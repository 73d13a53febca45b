# Demo: the SimMIM baseline on the same small Swin as
# configs/ummae/ummae_swin-mini_demo.py (full 128-px grid, 75% of the 16-px
# patches replaced by the mask token), same data and schedule. Window 8 on
# the 32x32 token map: the image span of the UM-MAE demo's window 4 on its
# compact grid (the reference relation, docs/method.md).
_base_ = [
    '../_base_/models/simmim_swin-tiny.py',
    '../_base_/datasets/demo_simmim-128.py',
    '../_base_/schedules/demo_adamw_coslr-20e.py',
    '../_base_/demo_runtime.py',
]

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8]),
        window_size=8),
    neck=dict(in_channels=256))
# SimMIM has no reconstruct(): no figure hook.
