# Demo: UM-MAE pre-training of a small PVT on the bundled demo photos on a
# CPU (128-px crops, sr ratios 2-1-1-1 on the 64-px compact image), then a
# reconstruction figure in the work dir. Schedule and data as the Swin demo.
_base_ = ['./ummae_swin-mini_demo.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UMPVT',
        arch=dict(
            embed_dims=[32, 64, 128, 256],
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4]),
        sr_ratios=(2, 1, 1, 1),
        drop_path_rate=0.0,
        out_indices=(3, ),
        mask_patch_size=16),
    neck=dict(in_channels=256))
