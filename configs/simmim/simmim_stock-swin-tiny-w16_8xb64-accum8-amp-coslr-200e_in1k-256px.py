# BENCHMARK REFERENCE, not a baseline to train: mmpretrain's own
# SimMIMSwinTransformer (fixed relative-position table) at the same geometry
# as our SimMIM Swin-T (window 16 on the 64x64 token map; 16 again on the
# 16x16 map of stage 3 (no shift) and 8 on the 8x8 map of stage 4, as a
# window shrinks to a smaller map), with mmpretrain's token-level
# SimMIMMaskGenerator (75% of the 16-px patches). Used by
# tools/analysis_tools/benchmark_pretrain.py to check that our baseline is
# no slower than mmpretrain's.
_base_ = ['./simmim_swin-tiny-w16_8xb64-accum8-amp-coslr-200e_in1k-256px.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='SimMIMSwinTransformer',
        arch='T',
        img_size=256,
        drop_path_rate=0.0,
        out_indices=(3, ),
        stage_cfgs=[
            dict(block_cfgs=dict(window_size=w)) for w in (16, 16, 16, 8)
        ]),
    head=dict(patch_size=4))  # the mask is on the 64x64 token grid

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=256,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='SimMIMMaskGenerator',
        input_size=256,
        mask_patch_size=16,
        model_patch_size=4,
        mask_ratio=0.75),
    # PackInputs turns a `mask` into a tensor itself (SimMIMMaskGenerator
    # gives a numpy array; algorithm_keys would pass it on as it is)
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
