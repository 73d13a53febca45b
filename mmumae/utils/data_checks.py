"""Fail early, with the fix, when a config's data is missing or empty."""
import os
import os.path as osp
from typing import Iterable, List, Optional

from .errors import RunError

DEMO_HINT = ("for a CPU demo run `make data` and use a configs/*/*_demo.py "
             "config")


class DataNotFoundError(RunError, FileNotFoundError):
    """A data root or annotation file that does not exist (also a
    ``FileNotFoundError``, which scripts may catch)."""


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


def _check_contents(key: str, dataset: dict) -> None:
    ann = dataset.get('ann_file')
    if ann:
        path = _join(dataset.get('data_root') or '', ann)
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
            root = dataset.get('data_root') or ''
            ann = dataset.get('ann_file')
            paths = [root] if root else []
            if ann:
                paths.append(_join(root, ann))
            for path in paths:
                if not osp.exists(path):
                    raise DataNotFoundError(
                        f'{key}: {path!r} does not exist. Put the data set '
                        'there (ImageNet layout: train/<class>/*.JPEG and '
                        'meta/train.txt) or point the config at it, e.g. '
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
