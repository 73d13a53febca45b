# ELPV study: the SimMIM baseline on the same small Swin as
# ummae_swin-mini_elpv-128px.py, at the reference geometry scaled to it: the
# full 128-px image (32x32 tokens), 75% of the 16-px patches replaced by the
# mask token, window 8 (the image span of UM-MAE's window 4 on its compact
# grid), a linear decoder. Same data, batch, optimiser and schedule.
_base_ = [
    '../../_base_/models/simmim_swin-tiny.py',
    '../../_base_/datasets/elpv_simmim-128.py',
    '../../_base_/schedules/demo_adamw_coslr-20e.py',
    '../../_base_/demo_runtime.py',
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

auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=5, max_keep_ckpts=1))
# the kNN score of the frozen backbone on val/ every 10 epochs (and after the
# last), read from the training loader's data root (mmumae's KNNProbeHook)
custom_hooks = [dict(type='KNNProbeHook', interval=10, img_size=128)]
