# ELPV study: UM-MAE pre-training of a small PVT (embed 32-64-128-256,
# depths 1-1-2-1, sized for 2 CPU cores) on the ELPV train split at 128 px:
# compact 64-px image, sr ratios 2-1-1-1 on its 16-8-4-2 stage maps, the
# 2-block decoder of the demo. Same optimiser, batch and schedule as the
# Swin study; the study runner sets the number of epochs.
_base_ = [
    '../../_base_/models/ummae_pvt-small.py',
    '../../_base_/datasets/elpv_ummae-128.py',
    '../../_base_/schedules/demo_adamw_coslr-20e.py',
    '../../_base_/demo_runtime.py',
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

auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=5, max_keep_ckpts=1))
# the kNN score of the frozen backbone on val/ every 10 epochs (and after the
# last), read from the training loader's data root (mmumae's KNNProbeHook)
custom_hooks = [
    dict(type='ReconstructionFigureHook', num_samples=4),
    dict(type='KNNProbeHook', interval=10, img_size=img_size),
]
