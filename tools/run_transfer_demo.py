"""The transfer chain on the CPU: pre-train -> fine-tune -> detect, segment.

Usage (``make transfer-demo`` runs it after ``make data``)::

    python tools/run_transfer_demo.py [--work-dir work_dirs/transfer_demo]
        [--pretrain-dir work_dirs/ummae_swin-mini_demo] [--no-random]

1. UM-MAE pre-training of the small demo Swin (``tools/run_demo.sh``), or
   its checkpoint reused when ``--pretrain-dir`` already holds one.
2. ``tools/model_converters/ummae_to_backbone.py``: backbone only.
3. ImageNet-style fine-tuning on the demo photos
   (``configs/finetune/swin-mini_ummae-pre_demo.py``), converted again.
4. Mask R-CNN on the demo COCO set and UperNet on the demo ADE20K set
   (``configs/mmdet/mask-rcnn_swin-mini_demo.py``,
   ``configs/mmseg/upernet_swin-mini_demo.py``) from the fine-tuned
   backbone: pre-train -> fine-tune -> dense task, the chain the paper
   recommends for pyramid ViTs.
5. Steps 3-4 again from a random initialisation with the same budget.

Every step is a ``tools/train.py`` run in its own process, its output in
a log file; while it runs, a progress line (step k of n, epoch, iteration,
the run's own ETA) is printed at each logged iteration and evaluation, and
at least once a minute. The table of top-1, bbox / segm mAP and mIoU (each
read from the run's ``vis_data/scalars.json``) and the time of each step
are printed and written to ``WORK_DIR/results.md``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import queue
import re
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, TextIO

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FINETUNE = 'configs/finetune/swin-mini_ummae-pre_demo.py'
DETECT = 'configs/mmdet/mask-rcnn_swin-mini_demo.py'
SEGMENT = 'configs/mmseg/upernet_swin-mini_demo.py'
CONVERT = 'tools/model_converters/ummae_to_backbone.py'
# (step name, config, metric keys in the run's scalars.json)
TASKS = [
    ('finetune', FINETUNE, ['accuracy/top1']),
    ('mask-rcnn', DETECT, ['coco/bbox_mAP', 'coco/segm_mAP']),
    ('upernet', SEGMENT, ['mIoU']),
]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='UM-MAE transfer chain on the demo data (CPU).')
    parser.add_argument('--work-dir', default='work_dirs/transfer_demo',
                        help='where every run and results.md go')
    parser.add_argument(
        '--pretrain-dir', default='work_dirs/ummae_swin-mini_demo',
        help='pre-training work dir: its last checkpoint is reused, or '
        'tools/run_demo.sh writes one there')
    parser.add_argument('--no-random', action='store_true',
                        help='skip the random-initialisation baseline')
    return parser.parse_args(argv)


# mmengine's LoggerHook lines, e.g.
#   Epoch(train) [2][ 6/12]  base_lr: ...  eta: 0:00:35  time: ...
#   Iter(train) [ 20/100]  ...  eta: 0:01:02 ...
#   Epoch(val) [1][4/4]  ...   /   Iter(val) [16/16]  ...
_LOG_LINE = re.compile(
    r'(?P<kind>Epoch|Iter)\((?P<mode>train|val|test)\)\s*'
    r'(?:\[\s*(?P<epoch>\d+)\])?\[\s*(?P<it>\d+)/(?P<total>\d+)\]'
    r'(?:.*?\beta: (?P<eta>[\d:]+(?: day[s]?, [\d:]+)?))?')
# the config dump at the start of every run: train_cfg = dict(... max_...)
_TRAIN_CFG = re.compile(r'^train_cfg = dict\(.*\bmax_(?P<unit>epochs|iters)'
                        r'=(?P<max>\d+)')
HEARTBEAT_S = 60.0  # a progress line at least this often


class Progress:
    """Follows one run's log and words where it is.

    Args:
        label (str): The step, e.g. ``'step 4/11 ummae: mask-rcnn'``.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.max_epochs: Optional[int] = None
        self.max_iters: Optional[int] = None
        self.status = 'starting'

    def update(self, line: str) -> Optional[str]:
        """Read one log line; the new status when it says where the run
        is (a logged train or val iteration), else None."""
        cfg = _TRAIN_CFG.search(line)
        if cfg:
            setattr(self, f'max_{cfg["unit"]}', int(cfg['max']))
            return None
        found = _LOG_LINE.search(line)
        if not found:
            return None
        it, total = int(found['it']), int(found['total'])
        if found['mode'] != 'train':
            self.status = f'evaluating {it}/{total}'
            return self.status
        parts = []
        if found['epoch']:
            of = f'/{self.max_epochs}' if self.max_epochs else ''
            parts.append(f'epoch {found["epoch"]}{of}')
            parts.append(f'iteration {it}/{total}')
        else:
            parts.append(f'iteration {it}/{self.max_iters or total}')
        if found['eta']:
            parts.append(f'ETA {found["eta"]}')
        self.status = ', '.join(parts)
        return self.status


def _pump(stream: TextIO, lines: 'queue.Queue[Optional[str]]') -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run(cmd: List[str], log: str, label: str = 'run',
         env: Optional[Dict[str, str]] = None) -> float:
    """Run ``cmd`` from the repository root, output to ``log``, printing
    progress lines (see :class:`Progress`); seconds it took."""
    start = time.time()
    print(f'[transfer-demo] {label}: {" ".join(cmd)}  (log: {log})',
          flush=True)
    progress = Progress(label)
    lines: 'queue.Queue[Optional[str]]' = queue.Queue()
    with open(log, 'w') as f:
        # unbuffered: a line reaches the progress as soon as it is written
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors='replace')
        threading.Thread(target=_pump, args=(proc.stdout, lines),
                         daemon=True).start()
        shown = time.time()
        while True:
            try:
                line = lines.get(timeout=HEARTBEAT_S)
            except queue.Empty:
                line = ''
            if line is None:
                break
            f.write(line)
            f.flush()
            status = progress.update(line) if line else None
            if status or time.time() - shown >= HEARTBEAT_S:
                print(f'[transfer-demo] {label} | '
                      f'{status or progress.status} | '
                      f'{time.time() - start:.0f} s', flush=True)
                shown = time.time()
        returncode = proc.wait()
    if returncode:
        sys.exit(f'[transfer-demo] {label} failed (exit {returncode}); the '
                 f'end of {log}:\n' + ''.join(open(log).readlines()[-15:]))
    return time.time() - start


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine's ``last_checkpoint`` file names, if any."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    path = open(marker).read().strip()
    path = path if osp.isabs(path) else osp.join(REPO, path)
    return path if osp.isfile(path) else None


def read_metrics(work_dir: str, keys: List[str]) -> Dict[str, float]:
    """The last logged value of each key in the run's scalars.json."""
    found: Dict[str, float] = {}
    for path in sorted(glob.glob(
            osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        for line in open(path):
            record = json.loads(line)
            found.update({k: record[k] for k in keys if k in record})
    missing = [k for k in keys if k not in found]
    if missing:
        sys.exit(f'[transfer-demo] {missing} not logged under {work_dir}')
    return found


class Steps:
    """Numbers the chain's steps: ``'step 4/11 ummae: mask-rcnn'``.

    Args:
        total (int): The number of steps of this run of the chain.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def next(self, name: str) -> str:
        self.done += 1
        return f'step {self.done}/{self.total} {name}'


def count_steps(pretrain_reused: bool, with_random: bool) -> int:
    """Pre-training (unless reused), its conversion, then per row:
    fine-tune, convert, Mask R-CNN, UperNet."""
    return (0 if pretrain_reused else 1) + 1 + 4 * (2 if with_random else 1)


def pretrain(args: argparse.Namespace, times: Dict[str, float],
             steps: Steps) -> str:
    ckpt = last_checkpoint(args.pretrain_dir)
    if ckpt:
        print(f'[transfer-demo] reusing the pre-training checkpoint {ckpt}')
        return ckpt
    env_dir = osp.abspath(args.pretrain_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    times['pre-train'] = _run(
        ['bash', 'tools/run_demo.sh'], osp.join(args.work_dir,
                                                'pretrain.log'),
        steps.next('pre-train'), env=dict(os.environ, DEMO_WORK_DIR=env_dir))
    return last_checkpoint(args.pretrain_dir)


def convert(src: str, dst: str, times: Dict[str, float], key: str,
            steps: Steps) -> str:
    times[key] = _run([sys.executable, CONVERT, src, dst], dst + '.log',
                      steps.next(key))
    return dst


def train(config: str, work_dir: str, init: Optional[str],
          label: str) -> float:
    """tools/train.py on ``config`` from backbone checkpoint ``init`` (None:
    random initialisation)."""
    opt = (f'model.backbone.init_cfg.checkpoint={init}'
           if init else 'model.backbone.init_cfg=None')
    os.makedirs(work_dir, exist_ok=True)
    # --overwrite: a second run moves the first one's files to previous_*/
    return _run([sys.executable, 'tools/train.py', config, '--work-dir',
                 work_dir, '--overwrite', '--cfg-options', opt],
                osp.join(work_dir, 'run.log'), label)


def run_row(args: argparse.Namespace, name: str, init: Optional[str],
            times: Dict[str, float], steps: Steps) -> Dict[str, float]:
    """Fine-tune from ``init``, convert, then detect and segment."""
    out: Dict[str, float] = {}
    ft_dir = osp.join(args.work_dir, f'{name}_finetune')
    key = f'{name}: finetune'
    times[key] = train(FINETUNE, ft_dir, init, steps.next(key))
    out.update(read_metrics(ft_dir, TASKS[0][2]))
    ft_backbone = convert(last_checkpoint(ft_dir),
                          osp.join(args.work_dir, f'{name}_ft_backbone.pth'),
                          times, f'{name}: convert fine-tuned', steps)
    dense_init = ft_backbone if init else None
    for step, config, keys in TASKS[1:]:
        work_dir = osp.join(args.work_dir, f'{name}_{step}')
        key = f'{name}: {step}'
        times[key] = train(config, work_dir, dense_init, steps.next(key))
        out.update(read_metrics(work_dir, keys))
    return out


def table(rows: Dict[str, Dict[str, float]], times: Dict[str, float],
          total: float) -> str:
    lines = [
        '| start | IN-style top-1 | bbox mAP | segm mAP | mIoU |',
        '|---|---|---|---|---|',
    ]
    for name, m in rows.items():
        lines.append(
            f'| {name} | {m["accuracy/top1"]:.2f} | '
            f'{100 * m["coco/bbox_mAP"]:.1f} | '
            f'{100 * m["coco/segm_mAP"]:.1f} | {m["mIoU"]:.2f} |')
    lines += ['', '| step | seconds |', '|---|---|']
    lines += [f'| {k} | {v:.0f} |' for k, v in times.items()]
    lines.append(f'| total | {total:.0f} |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    start = time.time()
    os.makedirs(args.work_dir, exist_ok=True)
    times: Dict[str, float] = {}
    steps = Steps(count_steps(
        last_checkpoint(args.pretrain_dir) is not None, not args.no_random))
    ckpt = pretrain(args, times, steps)
    backbone = convert(ckpt, osp.join(args.work_dir, 'pretrain_backbone.pth'),
                       times, 'convert pre-trained', steps)
    rows = {'UM-MAE pre-trained -> fine-tuned':
            run_row(args, 'ummae', backbone, times, steps)}
    if not args.no_random:
        rows['random init'] = run_row(args, 'random', None, times, steps)
    text = table(rows, times, time.time() - start)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(text + '\n')
    print('\n' + text)


if __name__ == '__main__':
    main()
