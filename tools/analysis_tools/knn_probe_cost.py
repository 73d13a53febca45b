"""What a KNNProbeHook score costs against a pre-training epoch.

::

    python tools/analysis_tools/knn_probe_cost.py CONFIG [--epochs 1]
        [--cfg-options k=v ...]

Trains CONFIG (whose ``custom_hooks`` hold a ``KNNProbeHook``) for
``--epochs`` epochs in this process with one compute thread, then scores
the backbone once with that hook, and prints the process CPU time and wall
time of both and the hook's share of pre-training at its interval.
"""
import argparse
import os.path as osp
import platform
import tempfile
import time

import torch
from mmengine.config import Config, DictAction

from mmumae.engine.hooks import KNNProbeHook
from mmumae_tools.cli import build_runner


def _timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(dict(args.cfg_options or {},
                             **{'train_cfg.max_epochs': args.epochs}))
    hooks = [h for h in cfg.get('custom_hooks', [])
             if h['type'] == 'KNNProbeHook']
    if not hooks:
        raise SystemExit(f'error: {args.config} has no KNNProbeHook in '
                         'custom_hooks')
    probe = KNNProbeHook(**{k: v for k, v in hooks[0].items()
                            if k != 'type'})
    cfg.custom_hooks = [h for h in cfg.custom_hooks if h not in hooks]
    cfg.work_dir = tempfile.mkdtemp(prefix='knn_cost_')
    runner = build_runner(cfg)
    train = _timed(runner.train)
    score = _timed(lambda: probe.score(runner))
    print(f'machine: {platform.machine()}, {osp.basename(args.config)}, '
          f'1 thread')
    print(f'pre-training, {args.epochs} epoch(s): CPU {train[0]:.1f} s, '
          f'wall {train[1]:.1f} s')
    print(f'one kNN score: CPU {score[0]:.1f} s, wall {score[1]:.1f} s')
    share = score[0] / (train[0] / args.epochs * probe.interval)
    print(f'at interval {probe.interval}: {100 * share:.1f}% of the '
          'pre-training CPU time')


if __name__ == '__main__':
    main()
