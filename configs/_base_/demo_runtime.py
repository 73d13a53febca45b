# Runtime of the CPU demos: the shared runtime with a log line every 10
# iterations, a checkpoint every 5 epochs (the latest 2 kept) and a fixed
# seed.
_base_ = ['./default_runtime.py']

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=5, max_keep_ckpts=2))
randomness = dict(seed=0, diff_rank_seed=True)
