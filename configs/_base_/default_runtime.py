# Runtime shared by every mmumae config (mmengine Runner, mmpretrain scope).
default_scope = 'mmpretrain'

# Register mmumae's modules (backbones, necks, heads, algorithms, transforms)
# and apply its compatibility fixes in every process that reads the config:
# needed by `mim train` and by dataloader workers. mmumae must be installed
# (pip install -e .) or on PYTHONPATH.
custom_imports = dict(imports=['mmumae'], allow_failed_imports=False)

# mmengine's Runner; its resume falls back to the newest loadable checkpoint
# and auto_scale_lr counts gradient accumulation (mmumae.engine.SafeRunner).
# `mim train` and mmpretrain's train.py build it too.
runner_type = 'SafeRunner'

# True: log and skip unreadable training images (0-byte, corrupt) instead of
# stopping (tools/train.py; validation and test images are never skipped).
skip_bad_images = False

default_hooks = dict(
    # time every iteration (data loading and forward/backward)
    timer=dict(type='IterTimerHook'),
    # print and write the log every 100 iterations
    logger=dict(type='LoggerHook', interval=100),
    # step the param_scheduler list
    param_scheduler=dict(type='ParamSchedulerHook'),
    # save every epoch, keep the latest 3 (auto-resume needs
    # `last_checkpoint`); `atomic_local` (mmumae.engine.AtomicLocalBackend)
    # writes each to a temporary file and renames it, and deletes old ones
    # only after that
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    backend_args=dict(backend='atomic_local')),
    # reseed the distributed sampler each epoch
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # prediction visualisation during validation, off by default
    visualization=dict(type='VisualizationHook', enable=False),
    # mmumae.engine.hooks: one run per work dir (lock), no earlier run
    # overwritten, a relative `last_checkpoint`; checkpoints that do not fit
    # the model refused; stop at a NaN/inf loss; exact resume
    work_dir=dict(type='WorkDirHook'),
    strict_load=dict(type='StrictLoadHook'),
    finite_loss=dict(type='FiniteLossHook'),
    exact_resume=dict(type='ExactResumeHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # a rank that stalls for 10 minutes ends the job (torch's default: 30)
    dist_cfg=dict(backend='nccl', timeout=600),
)

log_processor = dict(
    # average scalars over the last 10 logged iterations
    window_size=10,
    # count epochs in the log, like the paper's schedule
    by_epoch=True,
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'

# `load_from` loads weights only; `resume = True` also restores the optimizer,
# schedulers and iteration counter (tools/train.py --resume sets both).
load_from = None
resume = False

# A fixed seed, different per rank so every GPU sees other random masks.
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
