# ImageNet-1K classifier on UMPVT for fine-tuning (docs/method.md): sr ratios
# 8-4-2-1 (the dense geometry), a learnable stage-1 position embedding
# initialised from the pre-trained one (as the reference fine-tuning model),
# drop path 0.1, global average pooling, linear head with label smoothing
# 0.1, Mixup 0.8 / CutMix 1.0.
_base_ = ['./finetune_swin-tiny.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='UMPVT',
        arch='small',
        sr_ratios=(8, 4, 2, 1),
        learnable_pos_embed=True,
        drop_path_rate=0.1,
        out_indices=(3, )),
    head=dict(in_channels=512))
