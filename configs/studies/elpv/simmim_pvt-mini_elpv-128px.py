# ELPV study: the SimMIM baseline on the same small PVT as
# ummae_pvt-mini_elpv-128px.py at the reference geometry scaled to it: the
# full 128-px image with 75% of the 16-px patches masked, sr ratios 4-2-2-1
# on the 32-16-8-4 stage maps (keys of the same image span as UM-MAE's
# 2-1-1-1 on its compact maps), a linear decoder. Same data, batch,
# optimiser and schedule.
_base_ = [
    '../../_base_/models/simmim_pvt-small.py',
    '../../_base_/datasets/elpv_simmim-128.py',
    '../../_base_/schedules/demo_adamw_coslr-20e.py',
    '../../_base_/demo_runtime.py',
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

auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=5, max_keep_ckpts=1))
# the kNN score of the frozen backbone on val/ every 10 epochs (and after the
# last), read from the training loader's data root (mmumae's KNNProbeHook)
custom_hooks = [dict(type='KNNProbeHook', interval=10, img_size=128)]
