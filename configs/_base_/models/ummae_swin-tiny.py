# UM-MAE with Swin-T (window 8 on the compact grid) and the 2-block decoder.
model = dict(
    type='UMMAE',
    backbone=dict(
        type='UMSwinTransformer',
        arch='tiny',
        window_size=8,
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(
        type='UMMAEPretrainDecoder',
        in_channels=768,
        embed_dims=512,
        depth=2,
        num_heads=16,
        upscale=2,
        input_size=256,
        mask_patch_size=16,
        pos_order='original'),
    head=dict(
        type='UMMAEPretrainHead',
        norm_pix=True,
        mask_patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')))
