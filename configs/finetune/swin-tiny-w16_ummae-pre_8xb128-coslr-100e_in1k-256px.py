# Fine-tune a UM-MAE pre-trained Swin-T (window 8 in pre-training, 16 here)
# on ImageNet-1K: 100 epochs at 256 px, layer-wise lr decay 0.85 (paper:
# top-1 82.04). The checkpoint is the pre-training run's last epoch; any
# mmumae checkpoint holding `backbone.*` (full, or from
# tools/model_converters/ummae_to_backbone.py or official_to_mmumae.py) fits.
_base_ = [
    '../_base_/models/finetune_swin-tiny.py',
    '../_base_/datasets/imagenet_bs128_finetune-256px.py',
    '../_base_/schedules/finetune_adamw_coslr-100e.py',
    '../_base_/default_runtime.py',
]
pretrained = ('work_dirs/ummae_swin-tiny-w8_8xb512-amp-coslr-200e_in1k-256px/'
              'epoch_200.pth')

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    paramwise_cfg=dict(layer_decay_rate=0.85))

default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
randomness = dict(seed=0, diff_rank_seed=True)
