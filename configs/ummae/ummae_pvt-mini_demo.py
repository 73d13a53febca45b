# Demo: UM-MAE pre-training of a small PVT on the bundled demo photos on a
# CPU (128-px crops, sr ratios 2-1-1-1 on the 64-px compact image), then a
# reconstruction figure in the work dir. Schedule and data as the Swin demo.
_base_ = [
    '../_base_/models/ummae_pvt-small.py',
    '../_base_/datasets/demo_ummae-128.py',
    '../_base_/schedules/demo_adamw_coslr-20e.py',
    '../_base_/demo_runtime.py',
]
img_size = 128

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=[32, 64, 128, 256],
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4]),
        sr_ratios=(2, 1, 1, 1)),
    neck=dict(
        in_channels=256, embed_dims=128, depth=2, num_heads=4,
        input_size=img_size))

custom_hooks = [dict(type='ReconstructionFigureHook', num_samples=4)]
