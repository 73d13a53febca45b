# ELPV study: fine-tune the small Swin of ummae_swin-mini_elpv-128px.py (or
# of the SimMIM baseline, or from random init) as a functional-vs-defective
# classifier at 128 px, window 8 (stage maps 32-16-8-4), drop path 0.1,
# label smoothing 0.1, no Mixup/CutMix (configs/_base_/datasets/
# elpv_cls-128.py has the recipe). AdamW, batch 32, 1 warm-up epoch, cosine;
# no layer-wise lr decay (the study's ablation turns it on). The study runner
# sets the checkpoint (model.backbone.init_cfg), lr, epochs and seed.
_base_ = [
    '../../_base_/models/finetune_swin-tiny.py',
    '../../_base_/datasets/elpv_cls-128.py',
    '../../_base_/schedules/finetune_adamw_coslr-100e.py',
    '../../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8]),
        window_size=8,
        drop_path_rate=0.1,
        init_cfg=None),
    head=dict(num_classes=2, in_channels=256),
    train_cfg=None)

optim_wrapper = dict(
    optimizer=dict(lr=1e-3), paramwise_cfg=dict(layer_decay_rate=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=14, eta_min=1e-6, by_epoch=True,
         begin=1, end=15, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=15, val_interval=5)
auto_scale_lr = dict(base_batch_size=32)

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=5, max_keep_ckpts=1))
randomness = dict(seed=0, diff_rank_seed=True)
