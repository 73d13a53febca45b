# ELPV study: UM-MAE pre-training of a small Swin (embed 32, depths 1-1-2-1,
# 1.43 M backbone parameters, sized for 2 CPU cores) on the ELPV train split at
# 128 px: compact 64-px image, window 4 on its 16x16 token map, the
# 2-block decoder of the demo. AdamW lr 1.5e-3 at batch 32, 1 warm-up epoch,
# cosine; the study runner sets the number of epochs
# (tools/analysis_tools/run_study.py rescales the cosine to it).
_base_ = [
    '../../_base_/models/ummae_swin-tiny.py',
    '../../_base_/datasets/elpv_ummae-128.py',
    '../../_base_/schedules/demo_adamw_coslr-20e.py',
    '../../_base_/demo_runtime.py',
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
