# EXTRA, not the reference baseline: SimMIM Swin-T with window 8 on the full
# 64x64 token map (a cheaper encoder than the reference's window 16, which
# configs/simmim/simmim_swin-tiny-w16_8xb64-accum8-amp-coslr-200e_in1k-256px.py
# uses). Same data, schedule and batch; for ablations only.
_base_ = ['./simmim_swin-tiny-w16_8xb64-accum8-amp-coslr-200e_in1k-256px.py']
model = dict(backbone=dict(window_size=8))
