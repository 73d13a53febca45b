"""Fail early, with the fix, when a config's data is not where it says."""
import os.path as osp
from typing import Iterable, List

DEMO_HINT = ("for a CPU demo run `make data` and use a configs/*/*_demo.py "
             "config")


def _dataset_paths(dataset: dict) -> List[str]:
    """Paths a dataset config needs: its data root and annotation file."""
    if not isinstance(dataset, dict):
        return []
    if 'datasets' in dataset:  # ConcatDataset and friends
        return [p for d in dataset['datasets'] for p in _dataset_paths(d)]
    if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset
        return _dataset_paths(dataset['dataset'])
    paths = []
    root = dataset.get('data_root') or ''
    if root:
        paths.append(root)
    ann = dataset.get('ann_file')
    if ann:
        paths.append(ann if osp.isabs(ann) or not root else osp.join(
            root, ann))
    return paths


def check_dataset_paths(cfg,
                        loaders: Iterable[str] = ('train_dataloader', )
                        ) -> None:
    """Raise ``FileNotFoundError`` naming the missing path and the fix.

    Args:
        cfg (Config | dict): A full mmengine config.
        loaders (Iterable[str]): Dataloader keys to check.
    """
    for key in loaders:
        loader = cfg.get(key)
        if not loader:
            continue
        for path in _dataset_paths(loader.get('dataset', {})):
            if path and not osp.exists(path):
                raise FileNotFoundError(
                    f'{key}: {path!r} does not exist. Put the data set there '
                    f'(ImageNet layout: train/<class>/*.JPEG and '
                    f'meta/train.txt) or point the config at it, e.g. '
                    f'--cfg-options {key}.dataset.data_root=/path/to/data; '
                    f'{DEMO_HINT}.')
