# Demo: UM-MAE pre-training of a small Swin on the bundled demo photos
# (data/demo/imagenet, made by tools/dataset_converters/make_demo_data.py)
# on a CPU in a few minutes: 128-px crops (8x8 grid of 16-px mask patches,
# 64-px compact image), 20 epochs of 20 iterations at batch 16, then a
# reconstruction figure in the work dir. Same classes as the paper configs.
_base_ = [
    '../_base_/models/ummae_swin-tiny.py',
    '../_base_/datasets/demo_ummae-128.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
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

# fp32 OptimWrapper (the demo targets a CPU, where AmpOptimWrapper refuses to
# start), so that `mim train mmpretrain` (which has no CPU fall-back) runs it
# too; the paper's AdamW and weight-decay exemptions, and a larger lr than
# the paper's scaling, which trains a small batch faster.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=1.5e-3,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        fused=True),
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=19, eta_min=1e-5, by_epoch=True,
         begin=1, end=20, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=20)
auto_scale_lr = dict(base_batch_size=16)

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=5, max_keep_ckpts=2))
custom_hooks = [dict(type='ReconstructionFigureHook', num_samples=4)]
randomness = dict(seed=0, diff_rank_seed=True)
