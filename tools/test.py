"""Evaluate a checkpoint on a config's test set with mmengine's Runner.

::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

The metrics of ``test_evaluator`` are logged and written to the work
directory; ``--out`` additionally pickles every sample's prediction (with
mmengine's ``DumpResults``). ``mmumae`` is imported first, so its modules are
registered and its compatibility fixes (loading mmengine checkpoints under
torch >= 2.6) apply.

``--launcher pytorch|slurm|mpi`` also works on a machine without a GPU: the
processes then test on the CPU over a ``gloo`` process group, set up as in
``tools/train.py`` (whose functions this script reuses).
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
from typing import Optional, Sequence

_REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

try:
    import mmumae  # noqa: F401  (registers modules, applies compat fixes)
except ModuleNotFoundError as err:  # a checkout that is not installed
    if err.name != 'mmumae':
        raise
    sys.path.insert(0, _REPO_ROOT)
    import mmumae  # noqa: F401

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def _load_train_tool():
    """tools/train.py as a module, for its distributed set-up on the CPU."""
    name = '_mmumae_tools_train'
    if name not in sys.modules:
        path = osp.join(osp.dirname(osp.abspath(__file__)), 'train.py')
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


_train_tool = _load_train_tool()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Test a checkpoint with mmengine\'s Runner (mmumae '
        'modules registered).')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument('checkpoint', help='checkpoint file to evaluate')
    parser.add_argument(
        '--work-dir',
        help='where the test log and metrics go (default: the config\'s '
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--out',
        help='also dump every prediction to this pickle file (.pkl or '
        '.pickle)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=64 '
        'or key="[a,b]" for lists (no spaces inside a value)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='how the processes were launched')
    parser.add_argument(
        '--local-rank', '--local_rank', dest='local_rank', type=int,
        default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> None:
    """Apply the command line to ``cfg`` in place (``--cfg-options`` first,
    the dedicated flags after it)."""
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(args.config))[0]
        cfg.work_dir = osp.join('work_dirs', name)

    if cfg.get('test_dataloader') is None or cfg.get(
            'test_evaluator') is None:
        raise ValueError(
            f'{args.config} defines no test_dataloader/test_evaluator; '
            'pre-training configs have no test set: evaluate a fine-tuning '
            'config, or add them with --cfg-options.')
    loader = cfg.test_dataloader
    if loader.get('num_workers', 0) == 0:
        loader['persistent_workers'] = False

    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must end with .pkl or .pickle, got '
                             f'{args.out!r}')
        evaluator = cfg.test_evaluator
        metrics = list(evaluator) if isinstance(evaluator,
                                                (list, tuple)) else [evaluator]
        metrics.append(dict(type='DumpResults', out_file_path=args.out))
        cfg.test_evaluator = metrics


def check_launcher(launcher: str) -> None:
    """Fail early, with advice, where no process group can be started (no
    GPU and no gloo backend); see ``tools/train.py``."""
    _train_tool.check_launcher(launcher)


def build_runner(cfg: Config) -> Runner:
    """Build the default Runner, or ``cfg.runner_type`` from ``RUNNERS``."""
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    check_launcher(args.launcher)
    cfg = Config.fromfile(args.config)
    merge_args(cfg, args)
    # Without a GPU, a distributed launcher gets a gloo process group and a
    # CPU model wrapper (tools/train.py); nothing changes with a GPU.
    cpu_dist = _train_tool.setup_cpu_dist(cfg)
    runner = build_runner(cfg)
    if cpu_dist is not None:
        runner.logger.warning(cpu_dist)
    metrics = runner.test()
    if cpu_dist is not None:
        _train_tool.teardown_dist()
    return metrics


if __name__ == '__main__':
    main()
