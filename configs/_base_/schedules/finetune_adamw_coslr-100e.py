# ImageNet-1K fine-tuning schedule (docs/method.md, the reference
# fine-tuning recipe): AdamW, betas (0.9, 0.999), weight decay 0.05 (none on
# 1-D tensors, tokens, position embeddings), base lr 5e-4 per 256 images
# scaled to the total batch of 1024 (the reference's `--blr 5e-4` with 8 GPUs
# x 128, as the pre-training lr 1.5e-4 x 4096/256), 5 warm-up epochs, then
# cosine to 1e-6 at epoch 100. Layer-wise lr decay through mmpretrain's
# LearningRateDecayOptimWrapperConstructor and the backbones'
# `get_layer_depth`: `layer_decay_rate=1.0` is off; each config sets its own.
# fp32 here; the ImageNet configs switch to mixed precision
# (`type='AmpOptimWrapper', loss_scale='dynamic'`), the CPU demos do not.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=5e-4 * 1024 / 256,
        betas=(0.9, 0.999),
        weight_decay=0.05,
        fused=True),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=1.0,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.norm': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=95,
        eta_min=1e-6,
        by_epoch=True,
        begin=5,
        end=100,
        convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr above is for a total batch of 1024; `tools/train.py --auto-scale-lr`
# rescales it linearly for other GPU counts / batch sizes.
auto_scale_lr = dict(base_batch_size=1024)
