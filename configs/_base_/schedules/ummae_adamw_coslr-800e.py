# The long schedule (Swin-L in the paper): 800 epochs, 40 warm-up epochs;
# optimizer, weight decay and lr scaling as in the 200-epoch schedule.
_base_ = ['./ummae_adamw_coslr-200e.py']

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=760,
        eta_min=0.0,
        by_epoch=True,
        begin=40,
        end=800,
        convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=800)
