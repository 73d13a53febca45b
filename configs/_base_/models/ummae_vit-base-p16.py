# UM-MAE on a plain ViT-B/16 at 224 px (14x14 grid of 16-px patches, UM +
# SM 0.25) with MAE's 8-block decoder; no upsampling (upscale=1: one
# encoder token per kept patch).
model = dict(
    type='UMMAE',
    backbone=dict(
        type='UMVisionTransformer', arch='b', img_size=224, patch_size=16),
    neck=dict(
        type='UMMAEPretrainDecoder',
        in_channels=768,
        embed_dims=512,
        depth=8,
        num_heads=16,
        upscale=1,
        input_size=224,
        mask_patch_size=16,
        pos_order='original'),
    head=dict(
        type='UMMAEPretrainHead',
        norm_pix=True,
        mask_patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')))
