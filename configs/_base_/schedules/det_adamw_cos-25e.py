# GFL, the UM-MAE reference's detection schedule: 25 epochs, AdamW lr 1e-4
# (betas 0.9/0.999, wd 0.05, none on norms/biases/position embeddings),
# 2000-iteration linear warm-up, cosine to 0.01 x lr over the 25 epochs
# (per iteration; the warm-up factor multiplies the cosine's first 2000
# iterations, as mmdet's warm-up + step schedules do); mixed precision.
# Layer decay as det_adamw_1x.py (off by default).
_base_ = ['./det_adamw_1x.py']
max_epochs = 25
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=2000),
    dict(type='CosineAnnealingLR', eta_min_ratio=0.01, by_epoch=True,
         begin=0, end=max_epochs, T_max=max_epochs,
         convert_to_iter_based=True),
]
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
