# SimMIM Swin-T, window 8 (an extra, not the reference baseline) in bfloat16
# mixed precision: the default choice on Ampere and newer GPUs (A100, H100,
# RTX 30xx and later). bf16 keeps fp32's range, so it needs no loss scaling
# (mmengine's scaler stays on, harmless). Otherwise identical to the fp16
# base below (the extra's). Without a GPU, tools/train.py trains it in fp32
# with a warning.
_base_ = ['./simmim_swin-tiny-w8_8xb64-accum8-amp-coslr-200e_in1k-256px.py']
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
