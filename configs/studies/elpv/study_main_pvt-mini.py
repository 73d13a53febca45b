# ELPV main study (PVT): from scratch vs UM-MAE vs SimMIM with the small PVT,
# the same protocol as study_main_swin-mini.py.
#   python tools/analysis_tools/run_study.py \
#       configs/studies/elpv/study_main_pvt-mini.py
_base_ = ['./study_main_swin-mini.py']
work_dir = 'work_dirs/studies/elpv_main_pvt-mini'
runs_dir = 'work_dirs/studies/elpv_pvt-mini_runs'
pretrain = dict(
    _delete_=True,
    ummae='configs/studies/elpv/ummae_pvt-mini_elpv-128px.py',
    simmim='configs/studies/elpv/simmim_pvt-mini_elpv-128px.py')
finetune = 'configs/studies/elpv/pvt-mini_elpv-128px_finetune.py'
