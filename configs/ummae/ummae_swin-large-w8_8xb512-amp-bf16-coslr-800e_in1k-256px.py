# UM-MAE Swin-L (800 epochs, 256 px) in bfloat16 mixed precision: the default
# choice on Ampere and newer GPUs (A100, H100, RTX 30xx and later). bf16 keeps
# fp32's range, so it needs no loss scaling (mmengine's scaler stays on,
# harmless). Otherwise identical to the fp16 base below (the paper's). Without
# a GPU, tools/train.py trains it in fp32 with a warning.
_base_ = ['./ummae_swin-large-w8_8xb512-amp-coslr-800e_in1k-256px.py']
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
