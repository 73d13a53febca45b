"""An ImageNet-layout copy of the ELPV solar-cell images (Deitsch et al.,
Solar Energy 185, 2019; 2,624 cells labelled with a defect probability 0,
1/3, 2/3 or 1 and a module type) from the installed PyPI package
``elpv-dataset`` (CC-BY-NC-SA 4.0; never copied into this repository):
``{train,val,test}/<class>/*.png`` and ``meta/``, split stratified by
(probability, type) and seeded. :data:`MANIFEST` lists what a copy writes
(written first), :data:`STAMP` marks it finished (written last); only the
files of its own manifest are ever removed."""
import csv
import errno
import io
import json
import os
import os.path as osp
import shutil
from collections import Counter, defaultdict
from pathlib import Path
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
MANIFEST = '.elpv-manifest'
META = ('meta/classes.txt', 'meta/split.csv', 'meta/summary.json') + tuple(
    f'meta/{part}.txt' for part in SPLITS)

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


def _read_json(path: str) -> Optional[object]:
    """The JSON in ``path``; None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _clear(out: str) -> None:
    """Remove the stamp, then the files of the manifest (for a copy made
    before manifests: those its ``meta/`` lists) and the folders they leave
    empty; nothing else."""
    own = _read_json(osp.join(out, MANIFEST))
    if own is None and osp.isfile(osp.join(out, STAMP)):
        own = list(META) + [
            f'{part}/{line.split()[0]}' for part in SPLITS for line in Path(
                out, 'meta', f'{part}.txt').read_text().splitlines() if line]
    dirs = set()
    for rel in [STAMP] + list(own or []):
        if osp.isfile(osp.join(out, rel)) and not osp.isabs(rel) \
                and '..' not in rel.split('/'):
            os.remove(osp.join(out, rel))
            dirs.update({osp.dirname(rel), osp.dirname(osp.dirname(rel))})
    for d in sorted(dirs - {''}, key=len, reverse=True):
        if not os.listdir(osp.join(out, d)):
            os.rmdir(osp.join(out, d))


def prepare_elpv(out: str = 'data/elpv', classes: str = 'binary',
                 test_ratio: float = 0.25, val_ratio: float = 0.15,
                 seed: int = 0, force: bool = False,
                 root: Optional[str] = None) -> dict:
    """Write the copy and return its summary (also ``meta/summary.json``);
    a finished copy with the same settings is kept, an earlier copy with
    other settings replaced.

    Raises:
        ElpvError: Bad settings, a missing or incomplete package, an
            ``out`` that is a file or holds files this did not write, or a
            failed write (read-only or full disk).
    """
    if classes not in ('binary', '4'):
        raise ElpvError(f'--classes must be "binary" or "4", not {classes!r}')
    for name, ratio in (('--test-ratio', test_ratio),
                        ('--val-ratio', val_ratio)):
        if not 0.0 < ratio < 1.0:
            raise ElpvError(f'{name} must lie strictly between 0 and 1, '
                            f'got {ratio}')
    if not 0 <= seed < 2**32:
        raise ElpvError(f'--seed must be an integer from 0 to 2**32 - 1, '
                        f'got {seed}')
    if osp.exists(out) and not osp.isdir(out):
        raise ElpvError(f'--out {out} is a file; name a folder for the copy')
    stamp, meta = osp.join(out, STAMP), osp.join(out, 'meta')
    other = osp.isdir(out) and not osp.isfile(stamp) and not osp.isfile(
        osp.join(out, MANIFEST)) and next((osp.relpath(osp.join(d, f), out)
                                          for d, _, files in os.walk(out)
                                          for f in files), None)
    if other:
        raise ElpvError(f'{out} holds files prepare_elpv.py did not write '
                        f'(e.g. {other}), which it would not remove; name a '
                        f'new or empty folder with --out')
    root = root or package_root()
    rows = read_labels(root)
    names = BINARY_CLASSES if classes == 'binary' else FOUR_CLASSES
    settings = dict(classes=classes, test_ratio=test_ratio,
                    val_ratio=val_ratio, seed=seed, package=PACKAGE,
                    version=PACKAGE_VERSION, images=len(rows))
    if not force and _read_json(stamp) == settings:
        return _read_json(osp.join(meta, 'summary.json'))
    split = stratified_split(rows, test_ratio, val_ratio, seed)
    labels = [int(p >= 0.5) if classes == 'binary' else level_of(p)
              for _, p, _ in rows]
    rels = [f'{names[y]}/{osp.basename(path)}'
            for (path, _, _), y in zip(rows, labels)]
    lines, target = defaultdict(list), out

    def put(rel: str, text: str = '', src: Optional[str] = None) -> None:
        nonlocal target  # named if the write fails
        target = osp.join(out, rel)
        os.makedirs(osp.dirname(target), exist_ok=True)
        if src:
            shutil.copyfile(src, target)
        else:
            with open(target, 'w', newline='') as f:
                f.write(text)

    try:
        _clear(out)  # the stamp first: a copy stopped half-way has none
        put(MANIFEST, json.dumps(list(META) + [f'{split[path]}/{rel}' for (
            path, _, _), rel in zip(rows, rels)]))
        for (path, _, _), rel, y in zip(rows, rels, labels):
            if not osp.isfile(osp.join(root, path)):
                raise ElpvError(f'{osp.join(root, path)} is listed in '
                                f'labels.csv but missing: reinstall {PACKAGE}')
            put(f'{split[path]}/{rel}', src=osp.join(root, path))
            lines[split[path]].append(f'{rel} {y}')
        for part, text in [(p, sorted(lines[p])) for p in SPLITS] + [
                ('classes', names)]:
            put(f'meta/{part}.txt', '\n'.join(text) + '\n')
        table = io.StringIO()
        csv.writer(table).writerows([
            ['image', 'split', 'class', 'probability', 'type']] + sorted(
                (osp.basename(path), split[path], names[y], prob, kind)
                for (path, prob, kind), y in zip(rows, labels)))
        put('meta/split.csv', table.getvalue())
        counts = {p: Counter(x.split('/')[0] for x in lines[p])
                  for p in SPLITS}
        summary = dict(
            settings=settings, classes=list(names),
            counts={p: {n: counts[p][n] for n in names} for p in SPLITS},
            test_majority_accuracy=round(100.0 * max(counts['test'].values())
                                         / len(lines['test']), 2))
        put('meta/summary.json', json.dumps(summary, indent=1))
        put(STAMP, json.dumps(settings))  # last: the copy is complete
    except OSError as err:
        full = err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        raise ElpvError(
            f'cannot write {target}: {err.strerror}; ' +
            ('free some space' if full else 'make it writable') +
            ' or name another folder with --out, and run again') from None
    return summary
