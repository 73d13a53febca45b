# ELPV main study (Swin): from scratch vs UM-MAE vs SimMIM on the ELPV
# solar cells, functional vs defective. Both pre-training methods see the
# train split (labels unused) for the same number of epochs with the same
# optimiser, then every arm fine-tunes with the same recipe; each arm's lr is
# chosen from the same grid on the validation split (seed 0), and the other
# seeds run the chosen lr. The frozen backbone is also scored by a kNN and a
# linear probe. Run with
#   python tools/dataset_converters/prepare_elpv.py
#   python tools/analysis_tools/run_study.py \
#       configs/studies/elpv/study_main_swin-mini.py
data_root = 'data/elpv'
data_hint = ('make it with `python tools/dataset_converters/prepare_elpv.py` '
             '(needs `pip install -r requirements/study.txt`)')
work_dir = 'work_dirs/studies/elpv_main_swin-mini'
# shared with the quick and ablation studies: runs with equal settings are
# done once
runs_dir = 'work_dirs/studies/elpv_swin-mini_runs'

pretrain = dict(
    ummae='configs/studies/elpv/ummae_swin-mini_elpv-128px.py',
    simmim='configs/studies/elpv/simmim_swin-mini_elpv-128px.py')
finetune = 'configs/studies/elpv/swin-mini_elpv-128px_finetune.py'

seeds = [0, 1, 2]
pretrain_epochs = 40
finetune_epochs = 10
lr_grid = [5e-4, 2e-3]
lr_select_seeds = [0]
evaluations = ['finetune', 'knn', 'linear']

arms = [
    dict(name='scratch', pretrain=None),
    dict(name='ummae', pretrain='ummae'),
    dict(name='simmim', pretrain='simmim'),
]
