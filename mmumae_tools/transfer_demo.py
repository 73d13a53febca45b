"""The transfer chain on the CPU: pre-train (``tools/run_demo.sh``, or its
checkpoint reused) -> backbone -> fine-tune on the demo photos -> backbone
-> Mask R-CNN (demo COCO) and UperNet (demo ADE20K), then the same from a
random initialisation. Each step is ``tools/train.py`` (or a converter) on
the config as written in its own process, its output in a log file, with a
progress line (step k of n, epoch, iteration, ETA) at each logged iteration
and at least once a minute; metrics and step times go to ``results.md``."""
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
from pathlib import Path
from typing import Dict, List, Optional

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
# mmengine's LoggerHook lines: `Epoch(train) [2][ 6/12] ... eta: 0:00:35`,
# `Iter(train) [ 20/100] ...`, `Epoch(val) [1][4/4]`, `Iter(val) [16/16]`
_LOG_LINE = re.compile(
    r'(?P<kind>Epoch|Iter)\((?P<mode>train|val|test)\)\s*'
    r'(?:\[\s*(?P<epoch>\d+)\])?\[\s*(?P<it>\d+)/(?P<total>\d+)\]'
    r'(?:.*?\beta: (?P<eta>[\d:]+(?: day[s]?, [\d:]+)?))?')
# the config dump at the start of every run: train_cfg = dict(... max_...)
_TRAIN_CFG = re.compile(r'^train_cfg = dict\(.*\bmax_(?P<unit>epochs|iters)'
                        r'=(?P<max>\d+)')
HEARTBEAT_S = 60.0  # a progress line at least this often


class Progress:
    """Follows one run's log and words where it is."""

    def __init__(self, label: str) -> None:
        self.label, self.status = label, 'starting'
        self.max_epochs: Optional[int] = None
        self.max_iters: Optional[int] = None

    def update(self, line: str) -> Optional[str]:
        """Read one log line; the new status when it says where the run
        is (a logged train or val iteration), else None."""
        cfg = _TRAIN_CFG.search(line)
        if cfg:
            setattr(self, f'max_{cfg["unit"]}', int(cfg['max']))
        found = None if cfg else _LOG_LINE.search(line)
        if not found:
            return None
        it, total = int(found['it']), int(found['total'])
        if found['mode'] != 'train':
            self.status = f'evaluating {it}/{total}'
            return self.status
        of = f'/{self.max_epochs}' if self.max_epochs else ''
        parts = [f'iteration {it}/{self.max_iters or total}'] if not found[
            'epoch'] else [f'epoch {found["epoch"]}{of}', f'iteration {it}/'
                           f'{total}']
        self.status = ', '.join(parts + ([f'ETA {found["eta"]}']
                                         if found['eta'] else []))
        return self.status


def _run(cmd: List[str], log: str, label: str = 'run',
         env: Optional[Dict[str, str]] = None) -> float:
    """Run ``cmd`` from the repository root, output to ``log``, printing
    progress lines (see :class:`Progress`); seconds it took. A failed run
    ends the process with the end of its log."""
    start = shown = time.time()
    print(f'[transfer-demo] {label}: {" ".join(cmd)}  (log: {log})',
          flush=True)
    progress, lines = Progress(label), queue.Queue()
    # unbuffered: a line reaches the progress as soon as it is written
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')
    with open(log, 'w') as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors='replace')

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
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
    """The checkpoint mmengine's ``last_checkpoint`` file names (relative
    to the work dir or the repository, or absolute), if it exists."""
    marker = osp.join(work_dir, 'last_checkpoint')
    path = Path(marker).read_text().strip() if osp.isfile(marker) else None
    return next((p for p in (osp.join(work_dir, path), osp.join(REPO, path))
                 if osp.isfile(p)), None) if path else None


def read_metrics(work_dir: str, keys: List[str]) -> Dict[str, float]:
    """The last logged value of each key in the run's scalars.json."""
    found: Dict[str, float] = {}
    for path in sorted(glob.glob(
            osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for record in map(json.loads, f):
                found.update({k: record[k] for k in keys if k in record})
    missing = [k for k in keys if k not in found]
    if missing:
        sys.exit(f'[transfer-demo] {missing} not logged under {work_dir}')
    return found


def count_steps(pretrain_reused: bool, with_random: bool) -> int:
    """Pre-training (unless reused), its conversion, then fine-tune,
    convert, Mask R-CNN, UperNet from it, and fine-tune, Mask R-CNN, UperNet
    from random init (nothing to convert: its dense tasks start random)."""
    return (0 if pretrain_reused else 1) + 1 + 4 + (3 if with_random else 0)


def run_chain(work_dir: str, pretrain_dir: str,
              with_random: bool = True) -> str:
    """Run the chain (each ``tools/train.py --overwrite`` in its own work
    dir); the table of results and step times (Markdown), also written to
    ``work_dir/results.md``."""
    start, times = time.time(), {}
    os.makedirs(work_dir, exist_ok=True)
    ckpt = last_checkpoint(pretrain_dir)
    total = count_steps(ckpt is not None, with_random)

    def step(key: str, cmd: List[str], log: str, **env) -> None:
        times[key] = _run(cmd, log, f'step {len(times) + 1}/{total} {key}',
                          dict(os.environ, **env))

    def convert(src: str, name: str, key: str) -> str:
        dst = osp.join(work_dir, name)
        step(key, [sys.executable, CONVERT, src, dst], dst + '.log')
        return dst

    if ckpt:
        print(f'[transfer-demo] reusing the pre-training checkpoint {ckpt}')
    else:
        step('pre-train', ['bash', 'tools/run_demo.sh'],
             osp.join(work_dir, 'pretrain.log'),
             DEMO_WORK_DIR=osp.abspath(pretrain_dir))
        ckpt = last_checkpoint(pretrain_dir)
    init = convert(ckpt, 'pretrain_backbone.pth', 'convert pre-trained')
    rows = {}
    for row, title in [('ummae', 'UM-MAE pre-trained -> fine-tuned'),
                       ('random', 'random init')][:1 + with_random]:
        rows[title], backbone = {}, init if row == 'ummae' else None
        for task, config, keys in TASKS:  # the dense tasks: fine-tuned
            run_dir = osp.join(work_dir, f'{row}_{task}')
            os.makedirs(run_dir, exist_ok=True)
            step(f'{row}: {task}', [
                sys.executable, 'tools/train.py', config, '--work-dir',
                run_dir, '--overwrite', '--cfg-options',
                f'model.backbone.init_cfg.checkpoint={backbone}'
                if backbone else 'model.backbone.init_cfg=None'
            ], osp.join(run_dir, 'run.log'))
            rows[title].update(read_metrics(run_dir, keys))
            if task == 'finetune' and backbone:  # the random row stays random
                backbone = convert(last_checkpoint(run_dir),
                                   f'{row}_ft_backbone.pth',
                                   f'{row}: convert fine-tuned')
    lines = ['| start | IN-style top-1 | bbox mAP | segm mAP | mIoU |',
             '|---|---|---|---|---|'] + [
        f'| {name} | {m["accuracy/top1"]:.2f} | '
        f'{100 * m["coco/bbox_mAP"]:.1f} | {100 * m["coco/segm_mAP"]:.1f} '
        f'| {m["mIoU"]:.2f} |' for name, m in rows.items()]
    lines += ['', '| step | seconds |', '|---|---|'] + [
        f'| {k} | {v:.0f} |' for k, v in times.items()]
    text = '\n'.join(lines + [f'| total | {time.time() - start:.0f} |'])
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(text + '\n')
    return text
