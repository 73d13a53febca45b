"""An ImageNet-layout copy of the ELPV solar-cell images (Deitsch et al.,
Solar Energy 185, 2019): 2,624 grayscale 300x300 electroluminescence images
of cells, each labelled with the probability that it is defective (0, 1/3,
2/3 or 1) and its module type (mono or poly), read from the installed PyPI
package ``elpv-dataset`` (CC-BY-NC-SA 4.0; never copied into this
repository). :func:`prepare_elpv` writes ``{train,val,test}/<class>/*.png``
and ``meta/`` (``{train,val,test}.txt``, ``classes.txt``, ``split.csv``,
``summary.json``), so ``CustomDataset`` reads a split by folder or from its
annotation file with the same labels. The split is stratified by
(probability, type) and seeded (:func:`stratified_split`); classes are
``0_functional`` / ``1_defective`` (p >= 0.5), or the four levels.
"""
import csv
import json
import os
import os.path as osp
import shutil
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

PACKAGE = 'elpv-dataset'
PACKAGE_VERSION = '1.0.0.post1'
INSTALL_HINT = (f'the ELPV images come from the PyPI package {PACKAGE!r}, '
                f'which is not installed; install it with '
                f'`pip install -r requirements/study.txt` '
                f'(or `pip install {PACKAGE}=={PACKAGE_VERSION}`)')
BINARY_CLASSES = ('0_functional', '1_defective')
LEVELS = (0.0, 1 / 3, 2 / 3, 1.0)
FOUR_CLASSES = ('p0_00', 'p0_33', 'p0_67', 'p1_00')
SPLITS = ('train', 'val', 'test')
STAMP = '.elpv-stamp'

Label = Tuple[str, float, str]


class ElpvError(RuntimeError):
    """A problem explained in one line (printed as ``error: ...``)."""


def package_root() -> str:
    """The folder of the installed ``elpv_dataset`` package's data."""
    try:
        import elpv_dataset
    except ImportError as exc:
        raise ElpvError(INSTALL_HINT) from exc
    root = osp.join(osp.dirname(elpv_dataset.__file__), 'data')
    if not osp.isfile(osp.join(root, 'labels.csv')):
        raise ElpvError(f'{root}/labels.csv is missing: the installed '
                        f'{PACKAGE} is incomplete; reinstall it with '
                        f'`pip install --force-reinstall {PACKAGE}=='
                        f'{PACKAGE_VERSION}`')
    return root


def read_labels(root: str) -> List[Label]:
    """``(image path relative to root, probability, type)`` per image, in the
    order of ``labels.csv``."""
    rows = []
    with open(osp.join(root, 'labels.csv')) as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if parts and len(parts) != 3:
                raise ElpvError(f'{root}/labels.csv line {line_no}: expected '
                                f'"path probability type", got {line!r}')
            if parts:
                rows.append((parts[0], float(parts[1]), parts[2]))
    return rows


def level_of(prob: float) -> int:
    """Index of the nearest of the four probability levels."""
    return int(np.argmin([abs(prob - v) for v in LEVELS]))


def stratified_split(rows: Sequence[Label], test_ratio: float,
                     val_ratio: float, seed: int) -> Dict[str, str]:
    """Map image path -> 'train' / 'val' / 'test', stratified by
    (probability level, module type) and deterministic for a seed."""
    groups = defaultdict(list)
    for path, prob, kind in rows:
        groups[(level_of(prob), kind)].append(path)
    rng = np.random.RandomState(seed)
    split = {}
    for key in sorted(groups):
        paths = sorted(groups[key])
        rng.shuffle(paths)
        n_test = int(round(len(paths) * test_ratio))
        n_val = int(round((len(paths) - n_test) * val_ratio))
        split.update((p, 'test' if i < n_test else 'val' if i < n_test +
                      n_val else 'train') for i, p in enumerate(paths))
    return split


def _write_lines(path: str, lines: Sequence[str]) -> None:
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def prepare_elpv(out: str = 'data/elpv', classes: str = 'binary',
                 test_ratio: float = 0.25, val_ratio: float = 0.15,
                 seed: int = 0, force: bool = False,
                 root: Optional[str] = None) -> dict:
    """Write the ImageNet-layout copy and return its summary (also written
    to ``meta/summary.json``); a copy with the same settings is kept.

    Raises:
        ElpvError: Bad settings, or a missing or incomplete package.
    """
    if classes not in ('binary', '4'):
        raise ElpvError(f'--classes must be "binary" or "4", not {classes!r}')
    for name, ratio in (('--test-ratio', test_ratio),
                        ('--val-ratio', val_ratio)):
        if not 0.0 < ratio < 1.0:
            raise ElpvError(f'{name} must lie strictly between 0 and 1, '
                            f'got {ratio}')
    root = root or package_root()
    rows = read_labels(root)
    names = BINARY_CLASSES if classes == 'binary' else FOUR_CLASSES
    settings = dict(classes=classes, test_ratio=test_ratio,
                    val_ratio=val_ratio, seed=seed, package=PACKAGE,
                    version=PACKAGE_VERSION, images=len(rows))
    stamp, meta = osp.join(out, STAMP), osp.join(out, 'meta')
    if not force and osp.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == settings:
                with open(osp.join(meta, 'summary.json')) as f:
                    return json.load(f)
    split = stratified_split(rows, test_ratio, val_ratio, seed)
    for sub in SPLITS + ('meta', ):
        shutil.rmtree(osp.join(out, sub), ignore_errors=True)
    if osp.exists(stamp):
        os.remove(stamp)
    os.makedirs(meta, exist_ok=True)
    lines, counts, table = defaultdict(list), defaultdict(Counter), []
    for path, prob, kind in rows:
        src = osp.join(root, path)
        if not osp.isfile(src):
            raise ElpvError(f'{src} is listed in labels.csv but missing: '
                            f'reinstall {PACKAGE}')
        part = split[path]
        label = int(prob >= 0.5) if classes == 'binary' else level_of(prob)
        rel = f'{names[label]}/{osp.basename(path)}'
        os.makedirs(osp.join(out, part, names[label]), exist_ok=True)
        shutil.copyfile(src, osp.join(out, part, rel))
        lines[part].append(f'{rel} {label}')
        counts[part][names[label]] += 1
        table.append((osp.basename(path), part, names[label], prob, kind))
    for part in SPLITS:
        _write_lines(osp.join(meta, f'{part}.txt'), sorted(lines[part]))
    _write_lines(osp.join(meta, 'classes.txt'), names)
    with open(osp.join(meta, 'split.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['image', 'split', 'class', 'probability', 'type'])
        w.writerows(sorted(table))
    test = counts['test']
    summary = dict(
        settings=settings, classes=list(names),
        counts={p: {n: counts[p][n] for n in names} for p in SPLITS},
        test_majority_accuracy=round(
            100.0 * max(test[n] for n in names) / sum(test.values()), 2))
    with open(osp.join(meta, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    with open(stamp, 'w') as f:
        json.dump(settings, f)
    return summary
