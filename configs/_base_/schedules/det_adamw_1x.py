# mmdet's 1x schedule (12 epochs, lr x0.1 after epochs 8 and 11, validation
# every epoch; total batch 16, 8x2) with the optimizer of mmdet's Swin Mask
# R-CNN configs: AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05, 1000-iteration
# linear warm-up; no weight decay on norms, biases, position embeddings and
# the mask token. Layer-wise lr decay through mmumae's constructor, off
# (1.0) by default for pyramid backbones (paper); e.g. --cfg-options
# optim_wrapper.paramwise_cfg.layer_decay_rate=0.9 turns it on.
_base_ = ['mmdet::_base_/schedules/schedule_1x.py']
max_epochs = 12
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
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
