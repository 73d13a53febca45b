# Runtime shared by every mmumae config in mmpretrain's scope: mmpretrain's
# own runtime, plus mmumae's modules and the run safety (runsafe).
_base_ = ['mmpretrain::_base_/default_runtime.py']

# Register mmumae's modules (backbones, necks, heads, algorithms, mask
# transforms) and opt into run safety (runsafe: the runner, hooks, atomic
# checkpoints, checkpoint reader, SafeLoadImageFromFile) in every process
# that reads the config, `mim train` and dataloader workers included. Both
# are installed by `pip install -e .`.
custom_imports = dict(
    imports=['mmumae', 'runsafe'], allow_failed_imports=False)

# mmengine's Runner (runsafe.SafeRunner): resume falls back to the newest
# loadable checkpoint, data roots are checked before the first step,
# auto_scale_lr counts gradient accumulation, and on a machine without a GPU
# AmpOptimWrapper falls back to fp32 and torchrun launches use gloo.
# tools/train.py, `mim train` and mmpretrain's train.py all build it.
runner_type = 'SafeRunner'

default_hooks = dict(
    # save every epoch, keep the latest 3 (auto-resume needs
    # `last_checkpoint`); `atomic_local` (runsafe.AtomicLocalBackend) writes
    # each to a temporary file and renames it, and deletes old ones only
    # after that
    checkpoint=dict(
        max_keep_ckpts=3, backend_args=dict(backend='atomic_local')),
    # runsafe's hooks: one run per work dir (lock), no earlier run
    # overwritten, a relative `last_checkpoint`; checkpoints that do not fit
    # the model refused; stop at a NaN/inf loss; exact resume
    work_dir=dict(type='WorkDirHook'),
    strict_load=dict(type='StrictLoadHook'),
    finite_loss=dict(type='FiniteLossHook'),
    exact_resume=dict(type='ExactResumeHook'),
)

# a rank that stalls for 10 minutes ends the job (torch's default: 30)
env_cfg = dict(dist_cfg=dict(timeout=600))

log_processor = dict(
    # average scalars over the last 10 logged iterations
    window_size=10,
    # count epochs in the log, like the paper's schedule
    by_epoch=True,
)

# A fixed seed, different per rank so every GPU sees other random masks.
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
