# Fine-tune a UM-MAE pre-trained PVT-S (sr 4-2-1-1 in pre-training, 8-4-2-1
# here; stage-1 position embedding learnable from the pre-trained table) on
# ImageNet-1K: 100 epochs at 256 px, layer-wise lr decay 0.85 as the
# reference's PVT-S fine-tuning (paper: top-1 79.31).
_base_ = [
    '../_base_/models/finetune_pvt-small.py',
    '../_base_/datasets/imagenet_bs128_finetune-256px.py',
    '../_base_/schedules/finetune_adamw_coslr-100e.py',
    '../_base_/default_runtime.py',
]
pretrained = ('work_dirs/ummae_pvt-small_8xb512-amp-coslr-200e_in1k-256px/'
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
