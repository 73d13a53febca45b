"""Reconstruction figure of a UM-MAE checkpoint on a few images: rows are
images; columns original | US-masked | encoder input (SM patches blue) |
reconstruction (:func:`mmumae.visualization.save_reconstruction_figure`)."""
import os
import os.path as osp
from typing import Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmpretrain.registry import DATASETS

from mmumae.registry import MODELS
from mmumae.visualization import reconstruct_batch, save_reconstruction_figure
from runsafe import check_dataset_paths

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def reconstruction_figure(cfg: Config, checkpoint: str, out: str,
                          num: int = 4, img_dir: Optional[str] = None,
                          seed: int = 0, device: str = 'cpu') -> str:
    """Save the figure of ``checkpoint`` (weights of ``cfg.model``) to
    ``out`` (returned) on ``num`` samples through the config's training
    pipeline (crops and masks drawn with ``seed``): of its training set,
    or of the images in ``img_dir``."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        if img_dir:
            files = sorted(f for f in os.listdir(img_dir)
                           if f.lower().endswith(IMG_EXTS))[:num]
            pipeline = Compose(cfg.train_dataloader.dataset.pipeline)
            samples = [pipeline(dict(img_path=osp.join(img_dir, f)))
                       for f in files]
        else:
            check_dataset_paths(cfg, ['train_dataloader'])
            dataset = DATASETS.build(cfg.train_dataloader.dataset)
            samples = [dataset[i] for i in range(min(num, len(dataset)))]
    except FileNotFoundError as err:
        raise SystemExit(f'error: {err}') from None
    if not samples:
        raise SystemExit(f'error: no images ({", ".join(IMG_EXTS)}) in '
                         f'{img_dir or "the training set"}')
    if cfg.get('data_preprocessor'):  # as the Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'reconstruct'):
        raise SystemExit(f'error: {type(model).__name__} has no '
                         f'reconstruct(); use a UM-MAE config.')
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    results = reconstruct_batch(model.to(device), default_collate(samples))
    pre = model.data_preprocessor
    return save_reconstruction_figure(results, pre.mean, pre.std, out, num,
                                      title=osp.basename(checkpoint))
