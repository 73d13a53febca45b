# Fine-tune a UM-MAE pre-trained Swin-L (800 pre-training epochs) on
# ImageNet-1K: 100 epochs at 256 px, the Swin-T recipe with the reference's
# Swin-L changes: layer-wise lr decay 0.7, drop path 0.2 (paper: top-1 85.2).
_base_ = ['./swin-tiny-w16_ummae-pre_8xb128-coslr-100e_in1k-256px.py']
pretrained = ('work_dirs/ummae_swin-large-w8_8xb512-amp-coslr-800e_in1k-256px/'
              'epoch_800.pth')

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=1536))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.7))
