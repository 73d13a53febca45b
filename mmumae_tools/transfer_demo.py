"""The transfer chain on the CPU: pre-train (``tools/run_demo.sh``, or its
checkpoint reused) -> backbone only -> fine-tune on the demo photos ->
backbone only -> Mask R-CNN on the demo COCO set and UperNet on the demo
ADE20K set (the chain the paper recommends for pyramid ViTs), then the same
from a random initialisation. Every step runs in its own process
(``tools/train.py`` on the config as written, only the work dir and the
backbone checkpoint set), its output in a log file, with a progress line
(step k of n, epoch, iteration, the run's ETA) at each logged iteration and
at least once a minute. The table of top-1, bbox / segm mAP and mIoU (from
each run's ``scalars.json``) and each step's time go to ``results.md``.
"""
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
CONVERT = 'tools/model_converters/ummae_to_backbone.py'
# (step name, config, metric keys in the run's scalars.json)
TASKS = [
    ('finetune', FINETUNE, ['accuracy/top1']),
    ('mask-rcnn', 'configs/mmdet/mask-rcnn_swin-mini_demo.py',
     ['coco/bbox_mAP', 'coco/segm_mAP']),
    ('upernet', 'configs/mmseg/upernet_swin-mini_demo.py', ['mIoU']),
]
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
    """Follows one run's log and words where it is (``label``: the step,
    e.g. ``'step 4/11 ummae: mask-rcnn'``)."""

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
        if found['epoch']:
            of = f'/{self.max_epochs}' if self.max_epochs else ''
            parts = [f'epoch {found["epoch"]}{of}', f'iteration {it}/{total}']
        else:
            parts = [f'iteration {it}/{self.max_iters or total}']
        self.status = ', '.join(parts + ([f'ETA {found["eta"]}']
                                         if found['eta'] else []))
        return self.status


def _pump(stream: TextIO, lines: 'queue.Queue[Optional[str]]') -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run(cmd: List[str], log: str, label: str = 'run',
         env: Optional[Dict[str, str]] = None) -> float:
    """Run ``cmd`` from the repository root, output to ``log``, printing
    progress lines (see :class:`Progress`); seconds it took. A failed run
    ends the process with the end of its log."""
    start = shown = time.time()
    print(f'[transfer-demo] {label}: {" ".join(cmd)}  (log: {log})',
          flush=True)
    progress = Progress(label)
    lines: 'queue.Queue[Optional[str]]' = queue.Queue()
    # unbuffered: a line reaches the progress as soon as it is written
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')
    with open(log, 'w') as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors='replace')
        threading.Thread(target=_pump, args=(proc.stdout, lines),
                         daemon=True).start()
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
        with open(log) as f:
            tail = ''.join(f.readlines()[-15:])
        sys.exit(f'[transfer-demo] {label} failed (exit {returncode}); the '
                 f'end of {log}:\n{tail}')
    return time.time() - start


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine's ``last_checkpoint`` file names, if any."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        return None
    with open(marker) as f:
        path = f.read().strip()
    for candidate in (osp.join(work_dir, path), osp.join(REPO, path)):
        if osp.isfile(candidate):
            return candidate
    return None


def read_metrics(work_dir: str, keys: List[str]) -> Dict[str, float]:
    """The last logged value of each key in the run's scalars.json."""
    found: Dict[str, float] = {}
    for path in sorted(glob.glob(
            osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                found.update({k: record[k] for k in keys if k in record})
    missing = [k for k in keys if k not in found]
    if missing:
        sys.exit(f'[transfer-demo] {missing} not logged under {work_dir}')
    return found


def count_steps(pretrain_reused: bool, with_random: bool) -> int:
    """Pre-training (unless reused), its conversion, then per row:
    fine-tune, convert, Mask R-CNN, UperNet."""
    return (0 if pretrain_reused else 1) + 1 + 4 * (2 if with_random else 1)


class Chain:
    """The steps of one call (numbered, timed) in ``work_dir``."""

    def __init__(self, work_dir: str, pretrain_dir: str,
                 with_random: bool) -> None:
        self.work_dir, self.pretrain_dir = work_dir, pretrain_dir
        self.times: Dict[str, float] = {}
        self.total, self.done = count_steps(
            last_checkpoint(pretrain_dir) is not None, with_random), 0

    def step(self, key: str, cmd: List[str], log: str, **env) -> None:
        """Run the next step (``'step 4/9 ummae: mask-rcnn'``), extra
        environment variables in ``env``."""
        self.done += 1
        self.times[key] = _run(cmd, log, f'step {self.done}/{self.total} '
                               f'{key}', dict(os.environ, **env))

    def pretrain(self) -> str:
        """The pre-training checkpoint (``tools/run_demo.sh`` when none)."""
        ckpt = last_checkpoint(self.pretrain_dir)
        if ckpt:
            print(f'[transfer-demo] reusing the pre-training checkpoint '
                  f'{ckpt}')
            return ckpt
        self.step('pre-train', ['bash', 'tools/run_demo.sh'],
                  osp.join(self.work_dir, 'pretrain.log'),
                  DEMO_WORK_DIR=osp.abspath(self.pretrain_dir))
        return last_checkpoint(self.pretrain_dir)

    def convert(self, src: str, name: str, key: str) -> str:
        """Backbone-only copy of ``src`` in the work dir."""
        dst = osp.join(self.work_dir, name)
        self.step(key, [sys.executable, CONVERT, src, dst], dst + '.log')
        return dst

    def train(self, config: str, row: str, step: str, init: Optional[str],
              keys: List[str]) -> Dict[str, float]:
        """``tools/train.py`` on ``config`` from backbone checkpoint
        ``init`` (None: random initialisation); its metrics. A second call
        moves the first one's files to ``previous_*/`` (--overwrite)."""
        work_dir = osp.join(self.work_dir, f'{row}_{step}')
        opt = (f'model.backbone.init_cfg.checkpoint={init}'
               if init else 'model.backbone.init_cfg=None')
        os.makedirs(work_dir, exist_ok=True)
        self.step(f'{row}: {step}', [
            sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
            '--overwrite', '--cfg-options', opt
        ], osp.join(work_dir, 'run.log'))
        return read_metrics(work_dir, keys)

    def row(self, row: str, init: Optional[str]) -> Dict[str, float]:
        """Fine-tune from ``init``, convert, then detect and segment."""
        out = self.train(FINETUNE, row, 'finetune', init, TASKS[0][2])
        backbone = self.convert(
            last_checkpoint(osp.join(self.work_dir, f'{row}_finetune')),
            f'{row}_ft_backbone.pth', f'{row}: convert fine-tuned')
        for step, config, keys in TASKS[1:]:
            out.update(self.train(config, row, step,
                                  backbone if init else None, keys))
        return out


def table(rows: Dict[str, Dict[str, float]], times: Dict[str, float],
          total: float) -> str:
    """The results and step times as Markdown."""
    lines = ['| start | IN-style top-1 | bbox mAP | segm mAP | mIoU |',
             '|---|---|---|---|---|']
    lines += [f'| {name} | {m["accuracy/top1"]:.2f} | '
              f'{100 * m["coco/bbox_mAP"]:.1f} | '
              f'{100 * m["coco/segm_mAP"]:.1f} | {m["mIoU"]:.2f} |'
              for name, m in rows.items()]
    lines += ['', '| step | seconds |', '|---|---|']
    lines += [f'| {k} | {v:.0f} |' for k, v in times.items()]
    return '\n'.join(lines + [f'| total | {total:.0f} |'])


def run_chain(work_dir: str, pretrain_dir: str,
              with_random: bool = True) -> str:
    """Run the chain; the table, also written to ``work_dir/results.md``."""
    start = time.time()
    os.makedirs(work_dir, exist_ok=True)
    chain = Chain(work_dir, pretrain_dir, with_random)
    backbone = chain.convert(chain.pretrain(), 'pretrain_backbone.pth',
                             'convert pre-trained')
    rows = {'UM-MAE pre-trained -> fine-tuned': chain.row('ummae', backbone)}
    if with_random:
        rows['random init'] = chain.row('random', None)
    text = table(rows, chain.times, time.time() - start)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(text + '\n')
    return text
