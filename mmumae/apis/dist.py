"""Distributed launch on a machine without a GPU.

mmengine's launchers bind every process to a GPU (``torch.cuda.set_device``)
and ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]``, which torch's
``DistributedDataParallel`` rejects for a CPU module. With
``--launcher pytorch|slurm|mpi`` and no GPU, :func:`setup_cpu_dist` starts a
``gloo`` process group before the Runner is built (the Runner then skips its
own ``init_dist``) and builds the model wrapper with ``device_ids=None``.
With a GPU nothing changes (mmengine's ``init_dist`` with the config's
backend). Both honour ``env_cfg.dist_cfg.timeout`` (seconds).
"""
import datetime
import os
import subprocess
from typing import Dict, Mapping, Optional

import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    'has_amp_device', 'check_launcher', 'uses_cpu_dist', 'launcher_env',
    'configure_cpu_dist', 'init_cpu_dist', 'setup_cpu_dist', 'teardown_dist'
]


def has_amp_device() -> bool:
    """Whether a GPU (CUDA, NPU, MLU, MUSA) is available: mmengine's
    ``AmpOptimWrapper`` and launchers need one."""
    return get_device() != 'cpu'


def check_launcher(launcher: str) -> None:
    """Fail early, with advice, where no process group can be started.

    With a GPU (NPU, MLU, MUSA) mmengine's launchers are used as they are.
    Without one, :func:`init_cpu_dist` needs torch's ``gloo`` backend.
    """
    if launcher == 'none' or has_amp_device():
        return
    if not (torch_dist.is_available() and torch_dist.is_gloo_available()):
        raise SystemExit(
            f'--launcher {launcher} on a machine without a GPU needs '
            'torch.distributed with the gloo backend, which this torch build '
            'lacks; run a single process instead (--launcher none).')


def uses_cpu_dist(launcher: str) -> bool:
    """Whether this run is distributed over CPU processes (gloo)."""
    return launcher != 'none' and not has_amp_device()


def launcher_env(launcher: str,
                 environ: Optional[Mapping[str, str]] = None
                 ) -> Dict[str, str]:
    """The torch.distributed variables a launcher implies.

    Returns ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT``, read or derived the way mmengine's ``init_dist`` does
    for ``launcher`` (``torchrun`` sets them itself; Slurm and Open MPI
    under their own names), without binding a GPU.

    Args:
        launcher (str): ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        environ (Mapping, optional): The environment to read. Defaults to
            ``os.environ``.
    """
    env = dict(os.environ if environ is None else environ)
    if launcher == 'pytorch':
        names = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        missing = [name for name in names if name not in env]
        if missing:
            raise SystemExit(
                f'--launcher pytorch: {", ".join(missing)} not set; start '
                'the processes with torchrun (tools/dist_train.sh).')
        out = {name: env[name] for name in names}
        out['LOCAL_RANK'] = env.get('LOCAL_RANK', '0')
    elif launcher == 'slurm':
        out = dict(
            RANK=env['SLURM_PROCID'],
            WORLD_SIZE=env['SLURM_NTASKS'],
            LOCAL_RANK=env.get('SLURM_LOCALID', '0'),
            MASTER_PORT=env.get('MASTER_PORT', '29500'))
        if 'MASTER_ADDR' in env:
            out['MASTER_ADDR'] = env['MASTER_ADDR']
        else:  # the first node of the allocation, as mmengine does
            out['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {env["SLURM_NODELIST"]} | head -n1')
    elif launcher == 'mpi':
        if 'MASTER_ADDR' not in env:
            raise SystemExit('--launcher mpi: set MASTER_ADDR (and '
                             'MASTER_PORT, default 29500).')
        out = dict(
            RANK=env['OMPI_COMM_WORLD_RANK'],
            WORLD_SIZE=env['OMPI_COMM_WORLD_SIZE'],
            LOCAL_RANK=env.get('OMPI_COMM_WORLD_LOCAL_RANK', '0'),
            MASTER_ADDR=env['MASTER_ADDR'],
            MASTER_PORT=env.get('MASTER_PORT', '29500'))
    else:
        raise ValueError(f'Invalid launcher type: {launcher}')
    return out


def configure_cpu_dist(cfg: Config) -> str:
    """Edit ``cfg`` for data-parallel training on CPU processes.

    * ``env_cfg.dist_cfg.backend`` becomes ``'gloo'`` (what
      :func:`init_cpu_dist` uses; also what the run's log and dumped config
      show).
    * The model wrapper gets ``device_ids=None``: mmengine's
      ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]``, which torch's
      ``DistributedDataParallel`` rejects for a module on the CPU. Without a
      ``model_wrapper_cfg`` the one mmengine would build is written out
      (``MMDistributedDataParallel``, ``broadcast_buffers=False``, the
      config's ``find_unused_parameters``); a given one whose type is a
      ``DistributedDataParallel`` gets ``device_ids=None``, and any other
      wrapper is left alone.

    Returns:
        str: The warning to log.
    """
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = env_cfg.get('dist_cfg') or {}
    old_backend = dist_cfg.get('backend', 'nccl')
    dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg

    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    else:
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper_type = wrapper['type']
        if isinstance(wrapper_type, str):
            wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
        if isinstance(wrapper_type, type) and issubclass(
                wrapper_type, DistributedDataParallel):
            wrapper['device_ids'] = None

    return (f'Distributed launch (--launcher {cfg.launcher}) without a GPU: '
            'running distributed on the CPU, one process per rank, with the '
            f'gloo backend instead of {old_backend!r}, and the model wrapper '
            'built with device_ids=None. This is for tests and debugging; it '
            'is much slower than GPU training.')


def init_cpu_dist(launcher: str, dist_cfg: Optional[dict] = None) -> bool:
    """Start the gloo process group for ``launcher`` (no GPU bound).

    mmengine's ``Runner`` then finds ``torch.distributed`` initialised and
    skips its own ``init_dist`` (which calls ``torch.cuda.set_device``).

    Args:
        launcher (str): ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        dist_cfg (dict, optional): ``env_cfg.dist_cfg`` of the config;
            ``timeout`` (seconds) and other ``init_process_group`` keywords
            are honoured, ``backend`` is replaced by gloo.

    Returns:
        bool: True if the group was started here, False if one existed.
    """
    if torch_dist.is_initialized():
        return False
    kwargs = dict(dist_cfg or {})
    kwargs.pop('backend', None)
    init_backend = kwargs.pop('init_backend', 'torch')
    if init_backend != 'torch':
        raise SystemExit(f'dist_cfg.init_backend={init_backend!r} is not '
                         'supported without a GPU; use \'torch\'.')
    port = kwargs.pop('port', None)  # a Slurm option of mmengine's
    env = launcher_env(launcher)
    if port is not None and launcher == 'slurm':
        env['MASTER_PORT'] = str(port)
    os.environ.update(env)
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    torch_dist.init_process_group(
        backend='gloo',
        init_method='env://',
        rank=int(env['RANK']),
        world_size=int(env['WORLD_SIZE']),
        **kwargs)
    return True


def setup_cpu_dist(cfg: Config) -> Optional[str]:
    """On a machine without a GPU and with a distributed launcher, edit
    ``cfg`` (:func:`configure_cpu_dist`) and start the gloo process group
    (:func:`init_cpu_dist`). Does nothing otherwise (a GPU run, or
    ``--launcher none``).

    Returns:
        str or None: The warning to log once the runner's logger exists.
    """
    if not uses_cpu_dist(cfg.get('launcher', 'none')):
        return None
    message = configure_cpu_dist(cfg)
    init_cpu_dist(cfg.launcher, cfg.env_cfg.get('dist_cfg'))
    return message


def teardown_dist() -> None:
    """Destroy a process group started by :func:`init_cpu_dist`."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
