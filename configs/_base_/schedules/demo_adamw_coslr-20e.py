# Schedule of the CPU demos (20 epochs of 20 iterations at batch 16): fp32
# OptimWrapper (a CPU has no AMP, and `mim train mmpretrain` has no CPU
# fall-back), the paper's AdamW and weight-decay exemptions with a larger lr
# than the paper's scaling, which trains a small batch faster; one warm-up
# epoch, cosine.
_base_ = ['./ummae_adamw_coslr-200e.py']

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
