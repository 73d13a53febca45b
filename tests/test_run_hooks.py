"""What the run-safety hooks promise, pinned on the hooks themselves with
the few runner attributes each one reads: when the fp16 stop counts a
skipped step, what counts as non-finite weights, what each epoch's random
draws depend on."""
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from runsafe import ExactResumeHook, FiniteLossHook, RunError

GOOD = dict(loss=torch.tensor(1.0))


class _Scaler:
    """A loss scaler as the hook sees it: its current scale, halved after
    each step it skipped."""

    def __init__(self) -> None:
        self.scale = 2.0**16

    def get_scale(self) -> float:
        return self.scale


def _runner(work_dir, **extra) -> SimpleNamespace:
    return SimpleNamespace(iter=0, epoch=0, work_dir=str(work_dir), **extra)


def test_fp16_stop_counts_consecutive_skipped_steps_only(tmp_path):
    """Two skipped steps, a good one, again and again: 20 skipped steps in
    all never stop a run that stops after 3 in a row; 3 in a row do."""
    scaler = _Scaler()
    runner = _runner(tmp_path, optim_wrapper=SimpleNamespace(
        loss_scaler=scaler))
    hook = FiniteLossHook(max_skipped_steps=3)
    hook.after_train_iter(runner, 0, outputs=GOOD)  # the first scale seen
    for step in range(1, 31):
        runner.iter = step
        if step % 3:  # skipped: the scaler backs its scale off
            scaler.scale /= 2
        hook.after_train_iter(runner, step, outputs=GOOD)
    with pytest.raises(RunError, match=r'fp16 loss scaling skipped 3 '
                       r'consecutive steps up to iteration 34'):
        for step in range(31, 34):
            runner.iter = step
            scaler.scale /= 2
            hook.after_train_iter(runner, step, outputs=GOOD)


def test_one_non_finite_value_makes_the_weights_non_finite(tmp_path):
    """One NaN among finite values is enough: the checkpoint is not saved,
    and with rollbacks on, the run rolls back (here: stops, without a
    checkpoint) before the loss turns NaN."""
    hook = FiniteLossHook()
    ckpt = dict(meta=dict(iter=5), state_dict=dict(
        finite=torch.ones(4), one_nan=torch.tensor([1.0, float('nan'), 1.0])))
    with pytest.raises(RunError, match=r'non-finite weights after iteration '
                       r'5 \(1 tensors, e.g. one_nan\)'):
        hook.before_save_checkpoint(_runner(tmp_path), ckpt)
    del ckpt['state_dict']['one_nan']
    hook.before_save_checkpoint(_runner(tmp_path), ckpt)  # all finite

    model = torch.nn.Linear(3, 3)
    with torch.no_grad():
        model.weight[1, 2] = float('inf')
    runner = _runner(tmp_path, model=model, optim_wrapper=SimpleNamespace())
    with pytest.raises(RunError, match=r"non-finite loss at iteration 1 "
                       r"\(epoch 1\): \{'weights': nan\}"):
        FiniteLossHook(rollbacks=1).after_train_iter(runner, 0, outputs=GOOD)


def _draws(seed: int, epoch: int) -> tuple:
    """Python's, numpy's and torch's first draws of an epoch."""
    random.random(), np.random.rand(), torch.rand(1)  # earlier draws
    ExactResumeHook().before_train_epoch(SimpleNamespace(seed=seed,
                                                         epoch=epoch))
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_each_epoch_is_seeded_from_the_seed_and_the_epoch():
    state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        start = _draws(0, 3)
        assert _draws(0, 3) == start  # whatever was drawn before
        for other in (_draws(0, 4), _draws(1, 3)):  # epoch, seed
            assert all(a != b for a, b in zip(start, other)), (start, other)
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
