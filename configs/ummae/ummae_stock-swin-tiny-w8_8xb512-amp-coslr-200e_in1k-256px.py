# UM-MAE pre-training of the STOCK Swin-T architecture (mmpretrain's
# SwinTransformer: PatchMerging at the end of a stage, relative-position
# bias tables), 200 epochs on ImageNet-1K at 256 px. Same recipe, masks and
# decoder as ummae_swin-tiny-w8_*.py; the encoder attends in 8-token windows
# of the compact grid and reads the window-16 bias tables at each pair's
# offset in original coordinates. The backbone's weights are a stock
# SwinTransformer's plus `mask_token`: after
# tools/model_converters/ummae_to_backbone.py --stock-config CFG they load
# with no missing or unexpected key into mmpretrain's, mmdet's and mmseg's
# own Swin-T configs (docs/transfer.md). Not a paper number: the paper
# pre-trains the reference architecture.
_base_ = [
    '../_base_/models/ummae_swin-tiny.py',
    '../_base_/datasets/imagenet_bs512_ummae-256.py',
    '../_base_/schedules/ummae_adamw_coslr-200e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='UMStockSwinTransformer',
        arch='tiny',
        img_size=256,
        window_size=16,  # the bias tables: offsets of +-15 tokens
        um_window_size=8,  # windows on the compact grid
        mask_patch_size=16,
        drop_path_rate=0.0,
        out_indices=(3, )))
