# UM-MAE with PVT-S (sr ratios 4-2-1-1 on the compact grid), 2-block decoder.
model = dict(
    type='UMMAE',
    backbone=dict(
        type='UMPVT',
        arch='small',
        sr_ratios=(4, 2, 1, 1),
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(
        type='UMMAEPretrainDecoder',
        in_channels=512,
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
