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

Every step is a ``tools/train.py`` run in its own process; the table of
top-1, bbox / segm mAP and mIoU (each read from the run's
``vis_data/scalars.json``) and the time of each step are printed and
written to ``WORK_DIR/results.md``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional

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


def _run(cmd: List[str], log: str) -> float:
    """Run ``cmd`` from the repository root, output to ``log``; seconds."""
    start = time.time()
    print(f'[transfer-demo] {" ".join(cmd)}  (log: {log})', flush=True)
    with open(log, 'w') as f:
        done = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=f)
    if done.returncode:
        sys.exit(f'[transfer-demo] failed (exit {done.returncode}); the '
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


def pretrain(args: argparse.Namespace, times: Dict[str, float]) -> str:
    ckpt = last_checkpoint(args.pretrain_dir)
    if ckpt:
        print(f'[transfer-demo] reusing the pre-training checkpoint {ckpt}')
        return ckpt
    env_dir = osp.abspath(args.pretrain_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.time()
    log = osp.join(args.work_dir, 'pretrain.log')
    print(f'[transfer-demo] pre-training -> {env_dir} (log: {log})')
    with open(log, 'w') as f:
        done = subprocess.run(['bash', 'tools/run_demo.sh'], cwd=REPO,
                              stdout=f, stderr=f,
                              env=dict(os.environ, DEMO_WORK_DIR=env_dir))
    if done.returncode:
        sys.exit(f'[transfer-demo] pre-training failed; see {log}')
    times['pre-train'] = time.time() - start
    return last_checkpoint(args.pretrain_dir)


def convert(src: str, dst: str, times: Dict[str, float], key: str) -> str:
    times[key] = _run([sys.executable, CONVERT, src, dst], dst + '.log')
    return dst


def train(config: str, work_dir: str, init: Optional[str]) -> float:
    """tools/train.py on ``config`` from backbone checkpoint ``init`` (None:
    random initialisation)."""
    opt = (f'model.backbone.init_cfg.checkpoint={init}'
           if init else 'model.backbone.init_cfg=None')
    os.makedirs(work_dir, exist_ok=True)
    # --overwrite: a second run moves the first one's files to previous_*/
    return _run([sys.executable, 'tools/train.py', config, '--work-dir',
                 work_dir, '--overwrite', '--cfg-options', opt],
                osp.join(work_dir, 'run.log'))


def run_row(args: argparse.Namespace, name: str, init: Optional[str],
            times: Dict[str, float]) -> Dict[str, float]:
    """Fine-tune from ``init``, convert, then detect and segment."""
    out: Dict[str, float] = {}
    ft_dir = osp.join(args.work_dir, f'{name}_finetune')
    times[f'{name}: finetune'] = train(FINETUNE, ft_dir, init)
    out.update(read_metrics(ft_dir, TASKS[0][2]))
    ft_backbone = convert(last_checkpoint(ft_dir),
                          osp.join(args.work_dir, f'{name}_ft_backbone.pth'),
                          times, f'{name}: convert fine-tuned')
    dense_init = ft_backbone if init else None
    for step, config, keys in TASKS[1:]:
        work_dir = osp.join(args.work_dir, f'{name}_{step}')
        times[f'{name}: {step}'] = train(config, work_dir, dense_init)
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
    ckpt = pretrain(args, times)
    backbone = convert(ckpt, osp.join(args.work_dir, 'pretrain_backbone.pth'),
                       times, 'convert pre-trained')
    rows = {'UM-MAE pre-trained -> fine-tuned':
            run_row(args, 'ummae', backbone, times)}
    if not args.no_random:
        rows['random init'] = run_row(args, 'random', None, times)
    text = table(rows, times, time.time() - start)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(text + '\n')
    print('\n' + text)


if __name__ == '__main__':
    main()
