# UM-MAE pre-training schedule (paper; docs/method.md):
# AdamW, betas (0.9, 0.95), weight decay 0.05 with no decay on norms, biases,
# tokens and position embeddings; base lr 1.5e-4 per 256 images at the
# reference total batch of 4096 (8 GPUs x 512); 10 warm-up epochs, then
# cosine to zero at epoch 200. Mixed precision (SafeRunner falls back to
# fp32 on a machine without a GPU).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    # fused=True: torch's single-kernel AdamW (same update, on CPU and CUDA,
    # with or without AMP's grad scaler), faster than the default
    # per-parameter loop.
    optimizer=dict(
        type='AdamW',
        lr=1.5e-4 * 4096 / 256,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        fused=True),
    paramwise_cfg=dict(
        # by module type: every normalisation layer and every bias
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        # by name: whatever the module type (tokens, embeddings, norms)
        custom_keys={
            'norm': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'mask_token': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.0),
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=190,
        eta_min=0.0,
        by_epoch=True,
        begin=10,
        end=200,
        convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200)

# lr above is for a total batch of 4096; `tools/train.py --auto-scale-lr`
# rescales it linearly for other GPU counts / batch sizes.
auto_scale_lr = dict(base_batch_size=4096)
