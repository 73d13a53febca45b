# UperNet on ADE20K: 160k iterations, AdamW lr 1e-4 (betas 0.9/0.999, wd
# 0.05; none on norms, biases, position embeddings, the mask token), 1500
# linear warm-up iterations, then poly (power 1) to 0; validation (and, in
# the runtime, a checkpoint) every 16k iterations. Total batch 16 (8x2).
# Layer-wise lr decay through mmumae's constructor at 1.0 (off), as the
# paper for pyramid ViTs. The warm-up, poly and AdamW are those of mmseg's
# swin/*_upernet_8xb2-160k_ade20k-512x512.py configs, which state them in
# the config. mmseg's _base_/schedules/schedule_160k.py is not inherited: it
# also sets `default_hooks`, which the runtime base (default_runtime_seg.py)
# defines, and mmengine refuses a key defined by two bases; of it only the
# loops below would remain.
max_iters = 160000
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500,
         end=max_iters),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='mmpretrain.DenseLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=1.0,
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        flat_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
        }))

auto_scale_lr = dict(enable=False, base_batch_size=16)
