# Demo: UperNet on the bundled demo ADE20K set (data/demo/ade: 48 train, 16 val
# images of 256x320, 6 of the 150 ADE20K classes present) with the small Swin
# of configs/ummae/ummae_swin-mini_demo.py, on a CPU (32 s on 2 idle cores,
# docs/transfer.md): random resize x[0.5, 2.0], 128x128 crops, 100 iterations
# at batch 4, narrow heads, whole-image inference (the paper configs slide 512
# windows over 2048x512 images; at 256x320 one pass is cheaper), mIoU on the
# val split at the end. Starts from the newest demo pre-training checkpoint
# (latest.pth, linked by tools/run_demo.sh); tools/run_transfer_demo.py passes
# the fine-tuned one, or random init (`model.backbone.init_cfg=None`).
# Everything else is the Swin-T config (mmseg's UperNet, ADE20K pipelines with
# CheckSegMap and mIoU, AdamW with warm-up and poly decay, the runtime).
_base_ = ['./upernet_swin-tiny-w16_ummae-pre_8xb2-160k_ade20k-512x512.py']
data_root = 'data/demo/ade/ADEChallengeData2016'
checkpoint = 'work_dirs/ummae_swin-mini_demo/latest.pth'
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)  # one process, no SyncBN

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8]),
        window_size=8,
        init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(
        in_channels=[32, 64, 128, 256], channels=64, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=32, norm_cfg=norm_cfg),
    test_cfg=dict(_delete_=True, mode='whole'))

_scale = (320, 256)  # the demo images' own size
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='RandomResize', scale=_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='CheckSegMap', num_classes=150),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# a short schedule with a larger lr than the paper's (small batch, few
# steps); AdamW, poly decay and the weight-decay exemptions as the paper's
max_iters = 100
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=20),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=20,
         end=max_iters),
]
optim_wrapper = dict(optimizer=dict(lr=5e-4))
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)
