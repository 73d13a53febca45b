# Demo: fine-tune the small PVT pre-trained by
# configs/ummae/ummae_pvt-mini_demo.py (`DEMO_CONFIG=configs/ummae/
# ummae_pvt-mini_demo.py DEMO_WORK_DIR=work_dirs/ummae_pvt-mini_demo bash
# tools/run_demo.sh` links latest.pth there to its newest checkpoint) as a
# 10-class classifier on the bundled demo photos; sr ratios 8-4-2-1 and a
# learnable stage-1 position embedding (initialised from the fixed table at
# 128 px), otherwise as configs/finetune/swin-mini_ummae-pre_demo.py.
_base_ = ['./swin-mini_ummae-pre_demo.py']
img_size = 128

model = dict(
    backbone=dict(
        _delete_=True,
        type='UMPVT',
        arch=dict(
            embed_dims=[32, 64, 128, 256],
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            mlp_ratios=[4, 4, 4, 4]),
        sr_ratios=(8, 4, 2, 1),
        learnable_pos_embed=True,
        pretrain_img_size=img_size,
        drop_path_rate=0.1,
        out_indices=(3, ),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='work_dirs/ummae_pvt-mini_demo/latest.pth',
            prefix='backbone.')))
