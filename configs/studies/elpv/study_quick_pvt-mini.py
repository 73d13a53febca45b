# ELPV quick study (PVT): the PVT main study with one seed (its seed 0, so
# the runs are shared with it).
#   python tools/analysis_tools/run_study.py \
#       configs/studies/elpv/study_quick_pvt-mini.py
_base_ = ['./study_main_pvt-mini.py']
work_dir = 'work_dirs/studies/elpv_quick_pvt-mini'
seeds = [0]
