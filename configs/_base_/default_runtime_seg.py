# Runtime of the mmseg configs (configs/mmseg): mmseg's scope,
# iteration-based logging.
default_scope = 'mmseg'
# mmumae's modules (the backbones, as type='mmpretrain.<name>', and the
# layer-decay constructor of the schedules) and run safety (runsafe)
custom_imports = dict(
    imports=['mmumae', 'runsafe'], allow_failed_imports=False)

# runsafe's runner, atomic checkpoints and run hooks, as in
# default_runtime.py (registered in mmengine's root registries, so found from
# this scope).
runner_type = 'SafeRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=16000,
        max_keep_ckpts=3,
        backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    work_dir=dict(type='WorkDirHook'),
    strict_load=dict(type='StrictLoadHook'),
    finite_loss=dict(type='FiniteLossHook'),
    exact_resume=dict(type='ExactResumeHook'),
    visualization=dict(type='SegVisualizationHook'))

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # a rank that stalls for 10 minutes ends the job (torch's default: 30)
    dist_cfg=dict(backend='nccl', timeout=600))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)

log_level = 'INFO'
load_from = None
resume = False
