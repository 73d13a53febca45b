# SimMIM baseline, PVT-S on our backbone with the reference geometry (sr
# ratios 8-4-2-1 on the full grid), 200 epochs at 256 px
# (paper: FT top-1 79.28). Total batch 8 GPUs x 64 x 8 accumulation = 4096.
_base_ = [
    '../_base_/models/simmim_pvt-small.py',
    '../_base_/datasets/imagenet_bs512_simmim-256.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(accumulative_counts=8)
