# ELPV follow-up (Swin, seeds 0, 1, 2): UM-MAE pre-trained at lr 5e-4
# against the main study's 1.5e-3. At 1.5e-3 the Swin UM-MAE loss stays on
# a plateau (0.57 after 40 epochs, 0.60 after 80); at 5e-4 it falls to
# about 0.27. Fine-tuning as the main study's UM-MAE arm (its lr choice).
# Shares its runs with the main study and the ablations.
#   python tools/analysis_tools/run_study.py \
#       configs/studies/elpv/study_pre-lr_swin-mini.py
_base_ = ['./study_main_swin-mini.py']
work_dir = 'work_dirs/studies/elpv_pre-lr_swin-mini'
arms = [
    dict(name='scratch', pretrain=None, group='main arms'),
    dict(name='ummae', pretrain='ummae', group='main arms'),
    dict(name='ummae_pre-lr5e-4', pretrain='ummae',
         pretrain_options={'optim_wrapper.optimizer.lr': 5e-4},
         lr_from='ummae', group='pre-training lr (1.5e-3 = ummae)'),
]
