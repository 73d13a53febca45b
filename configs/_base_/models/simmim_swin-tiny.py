# SimMIM baseline on the same UMSwinTransformer (full 256-px grid, mask
# tokens), mmpretrain's SimMIM algorithm, linear decoder and L1 head.
# Reference geometry: window 16 on the 64x64 token map, the image span that
# UM-MAE's window 8 covers on the compact grid (stage maps 64, 32, 16, 8: the
# last two windows shrink to the map and do not shift).
model = dict(
    type='SimMIM',
    backbone=dict(
        type='UMSwinTransformer',
        arch='tiny',
        window_size=16,
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(type='SimMIMLinearDecoder', in_channels=768, encoder_stride=32),
    head=dict(
        type='SimMIMHead',
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))
