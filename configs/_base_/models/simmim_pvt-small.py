# SimMIM baseline on the same UMPVT: full 256-px grid, reference geometry
# sr ratios 8-4-2-1 (UM-MAE's 4-2-1-1 on the half-size compact grid).
model = dict(
    type='SimMIM',
    backbone=dict(
        type='UMPVT',
        arch='small',
        sr_ratios=(8, 4, 2, 1),
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(type='SimMIMLinearDecoder', in_channels=512, encoder_stride=32),
    head=dict(
        type='SimMIMHead',
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L1', channel=3)))
