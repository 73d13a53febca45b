"""Small, deterministic demo data sets made from scikit-image's photographs
(nothing downloaded; the same bytes on every run), each in the layout its
OpenMMLab dataset class reads: ``imagenet/`` (mmpretrain's ``ImageNet``; a
256x256 crop of one photograph, the class), ``coco/`` (mmdet's
``CocoDataset`` with ``metainfo=dict(classes=COCO_CLASSES)``; masked object
crops pasted without overlap on texture photographs, each box the extent of
the mask pycocotools rasterises from the polygon) and
``ade/ADEChallengeData2016/`` (mmseg's ``ADE20KDataset`` in ADE20K's ids,
:data:`ADE_IDS`, 0 = other). :func:`coco_layout` and :func:`ade_layout`
return what was placed.
"""
import fcntl
import functools
import json
import os
import os.path as osp
import shutil
import time
from typing import List, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from skimage import data as skdata

VERSION = 'mmumae-demo-data v1'  # bump whenever the output changes
STAMP = '.demo-data-stamp'
SEED = 20240101
JPEG_QUALITY = 90
IMAGENET_CLASSES = ('astronaut', 'camera', 'chelsea', 'coffee', 'coins',
                    'hubble_deep_field', 'immunohistochemistry', 'moon',
                    'retina', 'rocket')
IMAGENET_SIZE = 256
IMAGENET_PER_CLASS = dict(train=32, val=8)
# Objects: (photograph, subject box as fractions x0, y0, x1, y1).
_OBJECTS = {
    'person': ('astronaut', (0.05, 0.0, 0.85, 1.0)),
    'cat': ('chelsea', (0.0, 0.0, 0.85, 1.0)),
    'cup': ('coffee', (0.25, 0.0, 0.8, 0.85)),
}
COCO_CLASSES = ('person', 'cat', 'cup')
COCO_SPLITS = dict(train2017=48, val2017=16)
_COCO_BACKGROUNDS = ('brick', 'grass', 'gravel', 'moon', 'hubble_deep_field',
                     'immunohistochemistry', 'rocket', 'retina')
_IMAGE_SHAPES = ((256, 256), (256, 320), (320, 256))  # (height, width)
ADE_IDS = dict(wall=1, sky=3, grass=10, person=13, rock=35, animal=127)
_ADE_STUFF = dict(wall='brick', sky='hubble_deep_field', grass='grass',
                  rock='gravel')
_ADE_THINGS = dict(person='person', animal='cat')  # ADE name -> _OBJECTS key
ADE_SPLITS = dict(training=48, validation=16)


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A scikit-image photograph as a read-only RGB uint8 array."""
    img = getattr(skdata, name)()
    img = img.astype(np.uint8) * 255 if img.dtype == bool else img
    img = np.stack([img] * 3, axis=-1) if img.ndim == 2 else img
    img = np.ascontiguousarray(img[..., :3], dtype=np.uint8)
    img.setflags(write=False)
    return img


def _random_view(rng: np.random.Generator, img: np.ndarray, height: int,
                 width: int, scale: Tuple[float, float] = (0.3, 1.0),
                 box: Tuple[float, float, float, float] = (0, 0, 1, 1)
                 ) -> np.ndarray:
    """A random window of ``img`` (inside the fractional ``box``) of the
    aspect of ``height x width``, resized to it, flipped half the time."""
    h, w = img.shape[:2]
    img = img[int(box[1] * h):int(box[3] * h), int(box[0] * w):int(box[2] * w)]
    h, w = img.shape[:2]
    crop_h = max(8, int(round(min(h, w * height / width) *
                              rng.uniform(*scale))))
    crop_w = max(8, min(w, int(round(crop_h * width / height))))
    y0 = int(rng.integers(0, h - crop_h + 1))
    x0 = int(rng.integers(0, w - crop_w + 1))
    crop = img[y0:y0 + crop_h, x0:x0 + crop_w]
    shrink = width < crop.shape[1] or height < crop.shape[0]
    view = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA
                      if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(view[:, ::-1] if rng.random() < 0.5 else view)


def _write(path: str, img) -> None:
    """A JPEG of an RGB image, a PNG of a label map, or text lines; the
    folder made."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    if isinstance(img, (list, tuple)):
        with open(path, 'w') as f:
            f.write('\n'.join(img) + '\n')
        return
    args = ('.png', img) if path.endswith('.png') else (
        '.jpg', img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    ok, buf = cv2.imencode(*args)
    assert ok, path
    buf.tofile(path)


def _make_imagenet(root: str) -> str:
    rng = np.random.default_rng([SEED, 0])
    _write(osp.join(root, 'meta', 'classes.txt'), IMAGENET_CLASSES)
    counts = []
    for split, per_class in IMAGENET_PER_CLASS.items():
        lines = []
        for label, name in enumerate(IMAGENET_CLASSES):
            for i in range(per_class):
                rel = f'{name}/{name}_{split}_{i:04d}.JPEG'
                _write(osp.join(root, split, rel), _random_view(
                    rng, _photo(name), IMAGENET_SIZE, IMAGENET_SIZE))
                lines.append(f'{rel} {label}')
        _write(osp.join(root, 'meta', f'{split}.txt'), lines)
        counts.append(f'{len(lines)} {split}')
    return (f'{root}: {" + ".join(counts)} images, {len(IMAGENET_CLASSES)} '
            'classes, meta/{train,val,classes}.txt')


def _place_objects(rng: np.random.Generator, image: np.ndarray,
                   names: List[str], max_objects: int) -> List[dict]:
    """Paste non-overlapping objects (rectangle, ellipse or polygon) into
    ``image``: name, shape, polygon (to 0.01 px), mask (pycocotools' raster
    of the polygon, as a COCO loader makes it), bbox, area."""
    height, width = image.shape[:2]
    objects, taken = [], np.zeros((height, width), bool)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        name = names[int(rng.integers(len(names)))]
        kind = ('rectangle', 'ellipse', 'polygon')[int(rng.integers(3))]
        for _attempt in range(20):
            w = int(rng.integers(48, min(width, height) // 2 + 1))
            h = int(np.clip(w * rng.uniform(0.7, 1.4), 40, height - 8))
            x = int(rng.integers(2, width - w - 1))
            y = int(rng.integers(2, height - h - 1))
            if not taken[max(0, y - 2):y + h + 2,
                         max(0, x - 2):x + w + 2].any():
                break
        else:
            continue
        if kind == 'rectangle':
            pts = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        else:  # 32 points, or a random star of 5-8
            n = 32 if kind == 'ellipse' else int(rng.integers(5, 9))
            angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
            radius = np.ones(n) if kind == 'ellipse' else rng.uniform(
                0.55, 1, n)
            pts = zip(x + w / 2 + radius * np.cos(angles) * w / 2,
                      y + h / 2 + radius * np.sin(angles) * h / 2)
        polygon = [round(float(v), 2) for pt in pts for v in pt]
        rle = mask_utils.merge(
            mask_utils.frPyObjects([polygon], height, width))
        photo, box = _OBJECTS[name]
        pixels = _random_view(rng, _photo(photo), h, w, (0.6, 1.0), box)
        taken[y:y + h, x:x + w] = True
        mask = mask_utils.decode(rle).astype(bool)
        region = mask[y:y + h, x:x + w]
        image[y:y + h, x:x + w][region] = pixels[region]
        objects.append(dict(
            name=name, shape=kind, polygon=polygon, mask=mask,
            bbox=[int(v) for v in mask_utils.toBbox(rle)],
            area=int(mask_utils.area(rle))))
    return objects


def coco_layout(split: str, seed: int = SEED) -> List[dict]:
    """The COCO images of ``split`` (``'train2017'``, ``'val2017'``) as
    placed in memory: per image ``id``, ``file_name``, ``height``,
    ``width``, ``image`` (RGB uint8, before JPEG) and ``objects`` (``name``,
    ``shape``, ``polygon``, ``mask`` (bool HxW), ``bbox`` (x, y, w, h),
    ``area``)."""
    split_index = list(COCO_SPLITS).index(split)
    rng = np.random.default_rng([seed, 1, split_index])
    images = []
    for i in range(COCO_SPLITS[split]):
        height, width = _IMAGE_SHAPES[i % len(_IMAGE_SHAPES)]
        bg = _COCO_BACKGROUNDS[int(rng.integers(len(_COCO_BACKGROUNDS)))]
        image = _random_view(rng, _photo(bg), height, width).copy()
        objects = _place_objects(rng, image, list(COCO_CLASSES), 4)
        image_id = split_index * 100000 + i + 1
        images.append(dict(id=image_id, file_name=f'{image_id:012d}.jpg',
                           height=height, width=width, image=image,
                           objects=objects))
    return images


def _make_coco(root: str) -> str:
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='demo')
                  for i, name in enumerate(COCO_CLASSES)]
    lines = []
    for split in COCO_SPLITS:
        images, annotations = [], []
        for img in coco_layout(split):
            _write(osp.join(root, split, img['file_name']), img['image'])
            images.append(
                {k: img[k] for k in ('id', 'file_name', 'height', 'width')})
            annotations += [dict(
                id=len(annotations) + n + 1, image_id=img['id'],
                category_id=COCO_CLASSES.index(obj['name']) + 1,
                segmentation=[obj['polygon']], area=obj['area'],
                bbox=obj['bbox'], iscrowd=0)
                for n, obj in enumerate(img['objects'])]
        with open(osp.join(root, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
        lines.append(f'{root}/{split}: {len(images)} images, '
                     f'{len(annotations)} instances of {len(COCO_CLASSES)} '
                     f'classes, annotations/instances_{split}.json')
    return '\n'.join(lines)


def ade_layout(split: str, seed: int = SEED) -> List[dict]:
    """The ADE20K-style images of ``split`` (``'training'``,
    ``'validation'``) as made in memory: per image ``name`` (file stem),
    ``image`` (RGB uint8, before JPEG) and ``label`` (uint8 HxW, ADE20K
    ids, 0 = other)."""
    split_index = list(ADE_SPLITS).index(split)
    rng = np.random.default_rng([seed, 2, split_index])
    stuff, things = list(_ADE_STUFF), {v: k for k, v in _ADE_THINGS.items()}
    prefix = 'ADE_train' if split == 'training' else 'ADE_val'
    samples = []
    for i in range(ADE_SPLITS[split]):
        height, width = _IMAGE_SHAPES[i % len(_IMAGE_SHAPES)]
        # Two stuff regions split by a random straight line.
        first, second = rng.choice(len(stuff), size=2, replace=False)
        yy, xx = np.mgrid[:height, :width]
        angle = rng.uniform(0, np.pi)
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
        side = (xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle) > 0
        image = np.empty((height, width, 3), np.uint8)
        label = np.empty((height, width), np.uint8)
        for region, idx in ((side, first), (~side, second)):
            name = stuff[idx]
            image[region] = _random_view(rng, _photo(_ADE_STUFF[name]),
                                         height, width)[region]
            label[region] = ADE_IDS[name]
        # Half of the images get an unlabelled ("other", 0) band.
        if rng.random() < 0.5:
            band = int(rng.integers(16, height // 4))
            y0 = int(rng.integers(0, height - band))
            image[y0:y0 + band] = _random_view(rng, _photo('moon'), band,
                                               width)
            label[y0:y0 + band] = 0
        for obj in _place_objects(rng, image, list(things), 3):
            label[obj['mask']] = ADE_IDS[things[obj['name']]]
        samples.append(dict(name=f'{prefix}_{i + 1:08d}', image=image,
                            label=label))
    return samples


def _make_ade(root: str) -> str:
    lines = []
    for split in ADE_SPLITS:
        samples = ade_layout(split)
        for s in samples:
            _write(osp.join(root, 'images', split, s['name'] + '.jpg'),
                   s['image'])
            _write(osp.join(root, 'annotations', split, s['name'] + '.png'),
                   s['label'])
        lines.append(f'{root}: {len(samples)} {split} images + label maps '
                     f'(ADE20K ids {sorted(ADE_IDS.values())}, 0 = other)')
    return '\n'.join(lines)


def make_demo_data(out_dir: str = 'data/demo', force: bool = False,
                   verbose: bool = True) -> str:
    """Write the three demo sets under ``out_dir`` (returned), unless its
    stamp says this version is there and ``force`` is off. A lock lets
    parallel callers (test runs) share one folder: a waiting process
    finds the stamp written and returns."""
    def log(text: str) -> None:
        if verbose:
            print('\n'.join(f'[demo-data] {t}' for t in text.split('\n')))

    stamp = osp.join(out_dir, STAMP)
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, '.demo-data-lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and osp.isfile(stamp) and open(stamp).read() == VERSION:
            log(f'{out_dir} already holds {VERSION} (--force to rewrite)')
            return out_dir
        start = time.time()
        if osp.exists(stamp):
            os.remove(stamp)
        for sub in ('imagenet', 'coco', 'ade'):  # no stale files
            shutil.rmtree(osp.join(out_dir, sub), ignore_errors=True)
        log(_make_imagenet(osp.join(out_dir, 'imagenet')))
        log(_make_coco(osp.join(out_dir, 'coco')))
        log(_make_ade(osp.join(out_dir, 'ade', 'ADEChallengeData2016')))
        with open(stamp, 'w') as f:
            f.write(VERSION)
        log(f'done in {time.time() - start:.1f} s')
    return out_dir
