# Runtime of the mmdet configs (configs/mmdet): mmdet's scope, so `type`s
# resolve in mmdet's registries first, epoch-based logging, COCO
# visualisation hook.
default_scope = 'mmdet'
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
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', interval=1,
        max_keep_ckpts=3,
        backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    work_dir=dict(type='WorkDirHook'),
    strict_load=dict(type='StrictLoadHook'),
    finite_loss=dict(type='FiniteLossHook'),
    exact_resume=dict(type='ExactResumeHook'),
    visualization=dict(type='DetVisualizationHook'))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # a rank that stalls for 10 minutes ends the job (torch's default: 30)
    dist_cfg=dict(backend='nccl', timeout=600))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
