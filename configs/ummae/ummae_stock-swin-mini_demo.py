# Demo: UM-MAE pre-training of a small STOCK-architecture Swin
# (UMStockSwinTransformer: mmpretrain's SwinTransformer weights plus the
# mask token) on the bundled demo photos, on a CPU in a few minutes; the
# same data, schedule and decoder as ummae_swin-mini_demo.py. 128-px crops
# give a 64-px compact image (16x16 first-stage tokens): 8-token compact
# windows (the smallest that hold whole 16-px mask patches and shifts),
# read from the bias tables of a 16-token window, as the paper config.
_base_ = ['./ummae_swin-mini_demo.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UMStockSwinTransformer',
        arch=dict(
            embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
        img_size=128,
        window_size=16,
        um_window_size=8,
        mask_patch_size=16,
        drop_path_rate=0.0,
        out_indices=(3, )))
