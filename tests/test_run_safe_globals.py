"""The weights-only allow-list of :mod:`runsafe.safe_globals` on the real
stack: mmengine checkpoints resume through it, arbitrary globals stay
refused, and importing runsafe leaves torch's global allow-list alone."""
import io
import os
import pickle
import pickletools
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner

from runsafe import safe_globals as compat


# numpy 2 warns on every torch -> numpy conversion inside pycocotools and
# mmpretrain; not ours to fix, and it buries the report.
pytestmark = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')


class _TinyRegressor(BaseModel):
    """y = w.x + b, trained towards 0."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return out


class _Points(torch.utils.data.Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([float(i), 1.0]))


class _RecordStart(Hook):
    """Records the iteration a run starts from and the iterations it runs."""

    def __init__(self):
        self.start_iter = None
        self.iters_run = 0

    def before_train(self, runner):
        self.start_iter = runner.iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.iters_run += 1


def _globals_in(path):
    """The ``module.name`` of every GLOBAL in a torch zip checkpoint."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith('data.pkl'))
        data = archive.read(name)
    return {
        arg.replace(' ', '.').replace('__builtin__', 'builtins')
        for op, arg, _ in pickletools.genops(data) if op.name == 'GLOBAL'
    }


def _runner(work_dir, name, max_iters, resume, hook):
    return Runner(
        model=_TinyRegressor(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=_Points(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5,
                             by_epoch=False, begin=0, end=4),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook],
        resume=resume,
        default_scope='mmengine',
        log_level='WARNING')


def test_runner_resume_loads_mmengine_checkpoint(tmp_path):
    """Runner(resume=True) on torch >= 2.6 needs the allow-list (fix 1)."""
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    first = _runner(tmp_path, 'first', 2, False, _RecordStart())
    first.train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.is_file()
    # What the allow-list is for: these globals are in a real checkpoint.
    found = _globals_in(ckpt)
    assert {'mmengine.logging.history_buffer.HistoryBuffer',
            'numpy.ndarray', 'builtins.getattr'} <= found
    with pytest.raises(pickle.UnpicklingError):  # torch alone refuses it
        torch.load(ckpt, weights_only=True)
    with torch.serialization.safe_globals(compat.checkpoint_safe_globals()):
        saved = torch.load(ckpt, weights_only=True)  # the check stays on
    assert isinstance(saved['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)

    hook = _RecordStart()
    second = _runner(tmp_path, 'second', 4, True, hook)
    second.train()
    assert hook.start_iter == 2
    assert hook.iters_run == 2
    assert second.iter == 4
    # The message hub's history was restored too: 2 old + 2 new losses.
    losses = second.message_hub.get_scalar('train/loss')
    assert len(losses.data[0]) == 4


def test_weights_only_still_refuses_unknown_globals():
    """The allow-list is narrow: arbitrary callables stay refused, and the
    ``builtins.getattr`` stand-in resolves only HistoryBuffer methods."""

    class CallsSystem:

        def __reduce__(self):
            return (os.system, ('true', ))

    class GetsAttr:

        def __init__(self, owner, name):
            self.args = (owner, name)

        def __reduce__(self):
            return (getattr, self.args)

    def load(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        buf.seek(0)
        with torch.serialization.safe_globals(
                compat.checkpoint_safe_globals()):
            return torch.load(buf, weights_only=True)

    with pytest.raises(pickle.UnpicklingError):
        load(CallsSystem())
    with pytest.raises(pickle.UnpicklingError):
        load(GetsAttr(HistoryBuffer, '__init__'))
    with pytest.raises(pickle.UnpicklingError):
        load(GetsAttr(np.ndarray, 'tofile'))
    assert load(GetsAttr(HistoryBuffer, 'mean')) is HistoryBuffer.mean


def test_numpy1_checkpoint_globals_load():
    """Checkpoints written under numpy 1.x name ``numpy.core.multiarray``;
    they load through the aliases (fix 1)."""
    obj = dict(eta=np.float64(1.5), hist=np.arange(3, dtype=np.int64))
    buf = io.BytesIO()
    # Legacy format: the pickle is plain bytes followed by raw storages, so
    # renaming the module in it is a faithful numpy-1.x file.
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    assert raw.count(b'numpy._core.multiarray') >= 2
    old = raw.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    with torch.serialization.safe_globals(compat.checkpoint_safe_globals()):
        loaded = torch.load(io.BytesIO(old), weights_only=True)
    assert loaded['eta'] == 1.5 and loaded['eta'].dtype == np.float64
    np.testing.assert_array_equal(loaded['hist'], [0, 1, 2])


def test_import_changes_no_global_state():
    """Importing mmumae adds nothing to torch's allow-list and no numpy
    alias; the allow-list is used only inside read_checkpoint."""
    import subprocess
    import sys
    code = ('import numpy, torch, mmumae; from mmengine.logging import '
            'HistoryBuffer; print(HistoryBuffer in '
            'torch.serialization.get_safe_globals(), '
            'hasattr(numpy, "in1d") == (numpy.__version__ < "2.4"))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ['False', 'True']
