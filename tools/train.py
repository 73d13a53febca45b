"""Train (or pre-train) a model from an mmengine config.

The command line is the one mmpretrain users know::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--no-validate] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

Differences from mmpretrain's own ``tools/train.py``:

* ``mmumae`` is imported before the config is read, so every mmumae module
  is registered and the stack's compatibility fixes (e.g. resuming a
  checkpoint under torch >= 2.6) are in force even for configs that do not
  list ``custom_imports``.
* Mixed precision degrades gracefully. mmengine's ``AmpOptimWrapper``
  refuses to start on a machine without CUDA/NPU/MLU/MUSA. When the config
  asks for it (or ``--amp`` is given) on such a machine, the optimizer
  wrapper is switched to a plain fp32 ``OptimWrapper`` and a warning is
  logged, so the paper configs run unedited on a CPU (tests, demo data).
* Distributed launch works on a CPU. mmengine's launchers bind every process
  to a GPU (``torch.cuda.set_device``). With ``--launcher pytorch|slurm|mpi``
  and no GPU, the process group is initialised here with the ``gloo``
  backend before the Runner is built (the Runner then skips its own
  ``init_dist``), and the model is wrapped in ``MMDistributedDataParallel``
  with ``device_ids=None``, as torch requires for CPU modules. With a GPU
  nothing changes (mmengine's ``init_dist`` with the config's backend,
  ``nccl``).
"""
import argparse
import datetime
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Mapping, Optional, Sequence

_REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

try:
    import mmumae  # noqa: F401  (registers modules, applies compat fixes)
except ModuleNotFoundError as err:  # a checkout that is not installed
    if err.name != 'mmumae':
        raise
    sys.path.insert(0, _REPO_ROOT)
    import mmumae  # noqa: F401

import torch.distributed as torch_dist  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.device import get_device  # noqa: E402
from mmengine.optim import AmpOptimWrapper  # noqa: E402
from mmengine.registry import MODEL_WRAPPERS, RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from mmumae.utils import check_dataset_paths  # noqa: E402

# Keys that only AmpOptimWrapper understands; OptimWrapper rejects them.
_AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Train a model with mmengine\'s Runner (mmumae '
        'modules registered).')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: the config\'s '
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CKPT',
        help='resume from CKPT; without a value, resume from the latest '
        'checkpoint found in the work directory (a fresh start if none)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed-precision training (AmpOptimWrapper); ignored with a '
        'warning on a machine without a GPU')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate linearly with the actual total batch '
        'size relative to auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='set pin_memory=False in every dataloader')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='set persistent_workers=False in every dataloader')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=10 '
        'optim_wrapper.optimizer.lr=1e-3 or key="[a,b]" for lists '
        '(no spaces inside a value)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='how the processes were launched')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank (older); torchrun sets LOCAL_RANK instead.
    parser.add_argument(
        '--local-rank', '--local_rank', dest='local_rank', type=int,
        default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def has_amp_device() -> bool:
    """Whether ``AmpOptimWrapper`` can run here (any non-CPU device)."""
    return get_device() != 'cpu'


def _is_amp_type(wrapper_type) -> bool:
    if isinstance(wrapper_type, str):
        return wrapper_type.split('.')[-1] == 'AmpOptimWrapper'
    return isinstance(wrapper_type, type) and issubclass(
        wrapper_type, AmpOptimWrapper)


def _amp_wrapper_cfgs(optim_wrapper: dict) -> List[dict]:
    """Return the optim-wrapper dicts (one, or one per sub-model) in
    ``optim_wrapper`` that ask for ``AmpOptimWrapper``."""
    if 'type' in optim_wrapper:
        return [optim_wrapper] if _is_amp_type(optim_wrapper['type']) else []
    # A multi-optimizer config (a constructor building an OptimWrapperDict)
    # lists one wrapper dict per sub-model.
    return [
        value for value in optim_wrapper.values()
        if isinstance(value, dict) and _is_amp_type(value.get('type'))
    ]


def resolve_amp(cfg: Config, enable_amp: bool = False) -> List[str]:
    """Turn mixed precision on or off in ``cfg`` for this machine.

    Args:
        cfg (Config): The full config; ``cfg.optim_wrapper`` is edited in
            place.
        enable_amp (bool): ``--amp`` was given. Defaults to False.

    Returns:
        list[str]: Warnings to log (empty when nothing was changed or
        everything requested is available).
    """
    messages = []
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is None:
        return messages
    if has_amp_device():
        if enable_amp:
            if 'type' not in optim_wrapper:
                raise ValueError(
                    '--amp needs a single optim_wrapper with a `type`; edit '
                    'the sub-wrappers of this config instead.')
            optim_wrapper['type'] = 'AmpOptimWrapper'
            optim_wrapper.setdefault('loss_scale', 'dynamic')
        return messages

    if enable_amp:
        messages.append(
            '--amp was given but no GPU (CUDA/NPU/MLU/MUSA) is available: '
            'training in fp32 instead.')
    for wrapper in _amp_wrapper_cfgs(optim_wrapper):
        dropped = {k: wrapper.pop(k) for k in _AMP_ONLY_KEYS if k in wrapper}
        wrapper['type'] = 'OptimWrapper'
        detail = f' (dropped {dropped})' if dropped else ''
        messages.append(
            'The config asks for AmpOptimWrapper (mixed precision), which '
            'mmengine only supports on a GPU, and no GPU is available: '
            f'falling back to OptimWrapper in fp32{detail}. Results match '
            'AMP training up to numerical precision; it is only slower.')
    return messages


def _fix_dataloader(loader: Optional[dict], args: argparse.Namespace,
                    pin_default: bool) -> None:
    if not loader:
        return
    loader.setdefault('pin_memory', pin_default)
    loader.setdefault('collate_fn', dict(type='default_collate'))
    if args.no_pin_memory:
        loader['pin_memory'] = False
    if args.no_persistent_workers or loader.get('num_workers', 0) == 0:
        # torch rejects persistent_workers=True with num_workers=0, a common
        # override when debugging (--cfg-options ...num_workers=0).
        loader['persistent_workers'] = False


def merge_args(cfg: Config, args: argparse.Namespace) -> List[str]:
    """Apply the command line to ``cfg`` in place.

    ``--cfg-options`` is merged first; the dedicated flags (``--work-dir``,
    ``--resume``, ...) are applied after it and so take precedence.

    Returns:
        list[str]: Warnings to log once the runner (and its logger) exists.
    """
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('work_dirs', name)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr') is None or \
                'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=N)` in the config (the total batch size the '
                'learning rate was set for).')
        cfg.auto_scale_lr.enable = True

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    pin_default = has_amp_device()
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        _fix_dataloader(cfg.get(name), args, pin_default)

    return resolve_amp(cfg, enable_amp=args.amp)


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


def build_runner(cfg: Config) -> Runner:
    """Build the default Runner, or ``cfg.runner_type`` from ``RUNNERS``."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    check_launcher(args.launcher)
    cfg = Config.fromfile(args.config)
    warnings = merge_args(cfg, args)
    try:
        check_dataset_paths(cfg, ['train_dataloader'])
    except FileNotFoundError as err:
        raise SystemExit(f'error: {err}') from None
    cpu_dist = setup_cpu_dist(cfg)
    if cpu_dist is not None:
        warnings.insert(0, cpu_dist)
    runner = build_runner(cfg)
    # Logged through the runner so they also reach the run's log file; the
    # optimizer wrapper is only built later, inside train().
    for message in warnings:
        runner.logger.warning(message)
    runner.train()
    if cpu_dist is not None:
        teardown_dist()


if __name__ == '__main__':
    main()
