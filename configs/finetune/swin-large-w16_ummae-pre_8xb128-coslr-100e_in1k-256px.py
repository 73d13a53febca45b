# Fine-tune a UM-MAE pre-trained Swin-L (800 pre-training epochs) on
# ImageNet-1K: 100 epochs at 256 px, the Swin-T recipe with layer-wise lr
# decay 0.85 (paper: top-1 85.2).
_base_ = ['./swin-tiny-w16_ummae-pre_8xb128-coslr-100e_in1k-256px.py']
pretrained = ('work_dirs/ummae_swin-large-w8_8xb512-amp-coslr-800e_in1k-256px/'
              'epoch_800.pth')

model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=1536))
