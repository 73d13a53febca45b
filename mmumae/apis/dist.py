"""Distributed runs on CPU processes, where mmengine's launcher needs a GPU.

mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` whatever
the backend, and ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]``,
which torch's ``DistributedDataParallel`` rejects for a CPU module (the gap
and its upstream issue text: docs/tools.md). With ``--launcher pytorch``,
no GPU and ``env_cfg.dist_cfg.backend='gloo'`` in the config,
:func:`setup_cpu_dist` starts the process group with torch's public
``init_process_group`` before the Runner is built (mmengine then skips its
own ``init_dist``) and sets ``model_wrapper_cfg.device_ids=None``. With a
GPU nothing changes.
"""
import datetime

import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.device import get_device

from mmumae.utils import RunError

__all__ = ['has_amp_device', 'setup_cpu_dist', 'teardown_dist']


def has_amp_device() -> bool:
    """Whether a GPU (CUDA, NPU, MLU, MUSA) is available: mmengine's
    ``AmpOptimWrapper`` and launchers need one."""
    return get_device() != 'cpu'


def setup_cpu_dist(cfg: Config) -> bool:
    """Start a gloo process group for a distributed run without a GPU.

    Args:
        cfg (Config): The full config (``launcher``, ``env_cfg``); its
            ``model_wrapper_cfg`` is edited in place.

    Returns:
        bool: Whether a process group was started here.

    Raises:
        RunError: Without a GPU, for a backend other than gloo or a
            launcher other than pytorch (torchrun).
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or has_amp_device():
        return False
    dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend != 'gloo' or launcher != 'pytorch':
        raise RunError(
            f'--launcher {launcher} without a GPU runs CPU processes with '
            "torchrun (tools/dist_train.sh) and the gloo backend: add "
            '--cfg-options env_cfg.dist_cfg.backend=gloo (the config has '
            f'{backend!r}).')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if torch_dist.is_initialized():
        return False
    timeout = dist_cfg.get('timeout')
    torch_dist.init_process_group(
        backend='gloo',
        timeout=None if timeout is None else datetime.timedelta(
            seconds=timeout))
    return True


def teardown_dist() -> None:
    """Destroy a process group started by :func:`setup_cpu_dist`."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
