# SimMIM baseline on the same UMSwinTransformer (full 256-px grid, mask
# tokens), mmpretrain's SimMIM algorithm, linear decoder and L1 head.
model = dict(
    type='SimMIM',
    backbone=dict(
        type='UMSwinTransformer',
        arch='tiny',
        window_size=8,
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(type='SimMIMLinearDecoder', in_channels=768, encoder_stride=32),
    head=dict(
        type='SimMIMHead',
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))
