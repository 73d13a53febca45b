# Fine-tune a UM-MAE pre-trained STOCK Swin-T (configs/ummae/
# ummae_stock-swin-tiny-w8_*.py) as mmpretrain's own SwinTransformer on
# ImageNet-1K: window 16 (the pre-training's bias tables as they are; 8 on
# the 8x8 map of the last stage, as mmpretrain's SimMIM Swin configs at
# 256 px), 100 epochs, layer-wise lr decay 0.85 (the recipe of the
# reference-architecture config). No result of this pairing was measured.
# Make the start checkpoint first (drops the mask token, gives the last
# stage its window-8 tables: the centre of the window-16 ones), with W the
# pre-training work dir and THIS this config:
#   python tools/model_converters/ummae_to_backbone.py W/epoch_200.pth \
#       W/backbone_w16.pth --stock-config THIS
_base_ = ['./swin-tiny-w16_ummae-pre_8xb128-coslr-100e_in1k-256px.py']
pretrained = ('work_dirs/ummae_stock-swin-tiny-w8_8xb512-amp-coslr-200e_'
              'in1k-256px/backbone_w16.pth')

model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        arch='tiny',
        img_size=256,
        window_size=16,
        stage_cfgs=[
            dict(block_cfgs=dict(window_size=w)) for w in (16, 16, 16, 8)
        ],
        drop_path_rate=0.1,
        out_indices=(3, ),
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
