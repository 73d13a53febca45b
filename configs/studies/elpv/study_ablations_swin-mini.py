# ELPV ablations (Swin, seed 0), each against the main study's UM-MAE arm
# (40 pre-training epochs, secondary-mask ratio 0.25, no layer-wise lr decay,
# all training labels), whose runs are shared with the main study:
# - secondary masking: SM ratio 0 / 0.25 / 0.5 (US ratio 0.75 throughout);
# - layer-wise lr decay 0.85 in fine-tuning, against none;
# - pre-training length: 10 / 20 / 40 / 80 epochs (80 runs last);
# - pre-training lr 5e-4 against 1.5e-3 (run last);
# - 10% of the training labels (stratified) against 100%, from scratch and
#   from UM-MAE; 100 fine-tuning epochs on 10%, about the iterations of 10
#   epochs on all labels.
# The ablation arms fine-tune with the lr the main study chose for its arm
# on the validation split. They are listed (and run) cheapest first.
#   python tools/analysis_tools/run_study.py \
#       configs/studies/elpv/study_ablations_swin-mini.py
_base_ = ['./study_main_swin-mini.py']
work_dir = 'work_dirs/studies/elpv_ablations_swin-mini'
seeds = [0]
_sm = 'train_dataloader.dataset.pipeline.3.sm_ratio'

arms = [
    dict(name='scratch', pretrain=None, group='main arms (seed 0)'),
    dict(name='ummae', pretrain='ummae', group='main arms (seed 0)'),
    dict(name='ummae_layer-decay0.85', pretrain='ummae',
         finetune_options={'optim_wrapper.paramwise_cfg.layer_decay_rate':
                           0.85},
         lr_from='ummae', evaluations=['finetune'],
         group='layer-wise lr decay (none = ummae)'),
    dict(name='ummae_e10', pretrain='ummae', pretrain_epochs=10,
         lr_from='ummae', group='pre-training epochs (40 = ummae)'),
    dict(name='ummae_e20', pretrain='ummae', pretrain_epochs=20,
         lr_from='ummae', group='pre-training epochs (40 = ummae)'),
    dict(name='scratch_labels10%', pretrain=None, label_fraction=0.1,
         finetune_epochs=100, lr_from='scratch', evaluations=['finetune'],
         group='10% of the training labels'),
    dict(name='ummae_labels10%', pretrain='ummae', label_fraction=0.1,
         finetune_epochs=100, lr_from='ummae', evaluations=['finetune'],
         group='10% of the training labels'),
    dict(name='ummae_sm0', pretrain='ummae', pretrain_options={_sm: 0.0},
         lr_from='ummae', group='secondary-mask ratio (0.25 = ummae)'),
    dict(name='ummae_sm0.5', pretrain='ummae', pretrain_options={_sm: 0.5},
         lr_from='ummae', group='secondary-mask ratio (0.25 = ummae)'),
    dict(name='ummae_e80', pretrain='ummae', pretrain_epochs=80,
         lr_from='ummae', group='pre-training epochs (40 = ummae)'),
    dict(name='ummae_pre-lr5e-4', pretrain='ummae',
         pretrain_options={'optim_wrapper.optimizer.lr': 5e-4},
         lr_from='ummae', group='pre-training lr (1.5e-3 = ummae)'),
]
