# SimMIM baseline, Swin-T on our backbone with the reference geometry
# (window 16 on the full 64x64 token map), 200 epochs at 256 px
# (paper: FT top-1 82.20). Total batch 8 GPUs x 64 x 8 accumulation = 4096.
_base_ = [
    '../_base_/models/simmim_swin-tiny.py',
    '../_base_/datasets/imagenet_bs512_simmim-256.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(accumulative_counts=8)
