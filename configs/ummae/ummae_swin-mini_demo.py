# Demo: UM-MAE pre-training of a small Swin on the bundled demo photos
# (data/demo/imagenet, made by tools/dataset_converters/make_demo_data.py)
# on a CPU in a few minutes: 128-px crops (8x8 grid of 16-px mask patches,
# 64-px compact image), 20 epochs of 20 iterations at batch 16, then a
# reconstruction figure in the work dir. Same classes as the paper configs.
_base_ = [
    '../_base_/models/ummae_swin-tiny.py',
    '../_base_/datasets/demo_ummae-128.py',
    '../_base_/schedules/demo_adamw_coslr-20e.py',
    '../_base_/demo_runtime.py',
]
img_size = 128

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8]),
        window_size=4),
    neck=dict(
        in_channels=256, embed_dims=128, depth=2, num_heads=4,
        input_size=img_size))

custom_hooks = [dict(type='ReconstructionFigureHook', num_samples=4)]
