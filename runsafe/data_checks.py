"""Fail early, with the fix, when a config's data is missing or empty."""
import json
import os
import os.path as osp
from typing import Iterable, List, Optional

from .errors import RunError

DEMO_HINT = ("for a CPU demo run `make data` and use a configs/*/*_demo.py "
             "config")


class DataNotFoundError(RunError, FileNotFoundError):
    """A data root or annotation file that does not exist (also a
    ``FileNotFoundError``, which scripts may catch)."""


# What each kind of data set looks like on disk, for the missing-data advice.
LAYOUTS = {
    'CocoDataset': 'COCO layout: annotations/instances_train2017.json, '
    'train2017/*.jpg, val2017/*.jpg',
    'ADE20KDataset': 'ADE20K layout: images/{training,validation}/*.jpg and '
    'annotations/{training,validation}/*.png',
}
IMAGENET_LAYOUT = 'ImageNet layout: train/<class>/*.JPEG and meta/train.txt'
# A JSON annotation file up to this size is parsed before training.
JSON_PARSE_LIMIT = 64 * 2**20

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')


def _inner_datasets(dataset: dict) -> List[dict]:
    """The leaf dataset configs of a (possibly wrapped) dataset config."""
    if not isinstance(dataset, dict):
        return []
    if 'datasets' in dataset:  # ConcatDataset and friends
        return [d for inner in dataset['datasets']
                for d in _inner_datasets(inner)]
    if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset
        return _inner_datasets(dataset['dataset'])
    return [dataset]


def _join(root: str, path: str) -> str:
    return path if osp.isabs(path) or not root else osp.join(root, path)


def _image_folder(dataset: dict) -> str:
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix') or ''
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', prefix.get('img', '')) or ''
    return _join(root, prefix) if prefix else root


def _has_image(folder: str) -> bool:
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return True
    return False


def _check_json(key: str, path: str) -> None:
    """A COCO-style JSON: complete, and listing images (parsed up to
    :data:`JSON_PARSE_LIMIT`; only its end is read above)."""
    fix = 're-download or regenerate it'
    with open(path, 'rb') as f:
        f.seek(max(0, osp.getsize(path) - 64))
        tail = f.read().rstrip()
    if not tail.endswith((b'}', b']')):
        raise RunError(f'{key}: the annotation file {path} ends in the '
                       f'middle of its JSON (truncated); {fix}.')
    if osp.getsize(path) > JSON_PARSE_LIMIT:
        return
    try:
        with open(path) as f:
            data = json.load(f)
    except ValueError as err:
        raise RunError(f'{key}: the annotation file {path} is not valid '
                       f'JSON ({err}); {fix}.') from None
    if isinstance(data, dict) and 'images' in data and not data['images']:
        raise RunError(
            f'{key}: the annotation file {path} lists no images ("images": '
            '[]); point ann_file at the annotations of this split, or '
            f'{fix}.')


def _check_contents(key: str, dataset: dict) -> None:
    ann = dataset.get('ann_file')
    if ann:
        path = _join(dataset.get('data_root') or '', ann)
        if path.endswith('.json'):
            return _check_json(key, path)
        with open(path) as f:
            empty = not any(line.strip() for line in f)
        if empty:
            raise RunError(
                f'{key}: the annotation file {path} is empty; it should list '
                'one image per line (`relative/path.JPEG [label]`). Write '
                'it, or drop ann_file to use every image under the folder.')
        return
    folder = _image_folder(dataset)
    if folder and osp.isdir(folder) and not _has_image(folder):
        raise RunError(
            f'{key}: {folder} holds no images '
            f'({", ".join(IMAGE_EXTENSIONS[:4])}, ...); put them in class '
            f'sub-folders ({folder}/<class>/*.JPEG) or point data_root at '
            'them.')


def _paths(dataset: dict) -> List[str]:
    """The data root, and the annotation file or the prefix folders, that
    a dataset names."""
    root = dataset.get('data_root') or ''
    paths = [root] if root else []
    if dataset.get('ann_file'):  # it names the images; not checked here
        return paths + [_join(root, dataset['ann_file'])]
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, dict):
        paths += [_join(root, p) for p in prefix.values() if p]
    elif prefix:
        paths.append(_join(root, prefix))
    return paths


def check_dataset_paths(cfg,
                        loaders: Iterable[str] = ('train_dataloader', )
                        ) -> None:
    """Check that each dataset's data root and annotation file exist and
    that it holds images.

    Args:
        cfg (Config | dict): A full mmengine config.
        loaders (Iterable[str]): Dataloader keys to check.

    Raises:
        RunError: Naming the missing (:class:`DataNotFoundError`) or empty
            path and the fix.
    """
    for key in loaders:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset in _inner_datasets(loader.get('dataset', {})):
            layout = LAYOUTS.get(str(dataset.get('type')).split('.')[-1],
                                 IMAGENET_LAYOUT)
            for path in _paths(dataset):
                if not osp.exists(path):
                    raise DataNotFoundError(
                        f'{key}: {path!r} does not exist. Put the data set '
                        f'there ({layout}) or point the config at it, e.g. '
                        f'--cfg-options {key}.dataset.data_root=/path/to/'
                        f'data; {DEMO_HINT}.')
            _check_contents(key, dataset)


def check_batches(num_samples: int, batch_size: int, world_size: int,
                  drop_last: bool, key: str = 'train_dataloader',
                  num_batches: Optional[int] = None) -> None:
    """Refuse a training set that gives no batch at all.

    Args:
        num_samples (int): Images in the data set.
        batch_size (int): Images per batch and process.
        world_size (int): Number of processes.
        drop_last (bool): Whether an incomplete batch is dropped.
        key (str): The dataloader's config key, for the message.
            Defaults to 'train_dataloader'.
        num_batches (int, optional): ``len(dataloader)`` when known.

    Raises:
        RunError: When the data set is empty or, with ``drop_last``,
            smaller than one batch on each process.
    """
    if num_samples == 0:
        raise RunError(f'{key}: the data set is empty (0 images); check '
                       'data_root, data_prefix and ann_file.')
    if num_batches is None:
        per_rank = -(-num_samples // world_size)
        num_batches = per_rank // batch_size if drop_last else 1
    if num_batches == 0:
        raise RunError(
            f'{key}: {num_samples} images are fewer than one batch '
            f'({batch_size} per process x {world_size} processes), and '
            'drop_last=True drops them all; lower '
            f'{key}.batch_size or add images.')
