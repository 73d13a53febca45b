# ELPV quick study (Swin): the main study with one seed (the main study's
# seed 0, so its runs are shared with it).
#   python tools/analysis_tools/run_study.py \
#       configs/studies/elpv/study_quick_swin-mini.py
_base_ = ['./study_main_swin-mini.py']
work_dir = 'work_dirs/studies/elpv_quick_swin-mini'
seeds = [0]
