"""Reconstruction figure of a UM-MAE checkpoint on a few images.

    python tools/visualization/vis_reconstruction.py CONFIG CHECKPOINT \
        [--img-dir DIR] [--num 4] [--out reconstruction.png] [--seed 0]

Rows are images; columns: original | US-masked | encoder input (SM patches
blue) | reconstruction. Images come from the config's training set (its
pipeline draws the crops and masks) or, with ``--img-dir``, from the image
files in DIR pushed through the same pipeline.
"""
import argparse
import os
import os.path as osp
import sys

try:
    import mmumae  # noqa: F401  (registers modules, applies compat fixes)
except ModuleNotFoundError as err:  # a checkout that is not installed
    if err.name != 'mmumae':
        raise
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))))
    import mmumae  # noqa: F401

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import Compose, default_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

from mmpretrain.registry import DATASETS  # noqa: E402

from mmumae.registry import MODELS  # noqa: E402
from mmumae.utils import check_dataset_paths  # noqa: E402
from mmumae.visualization import (reconstruct_batch,  # noqa: E402
                                  save_reconstruction_figure)

IMG_EXTS = ('.jpg', '.jpeg', '.png', '.bmp')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Save a UM-MAE reconstruction figure for a checkpoint.')
    parser.add_argument('config', help='the pre-training config')
    parser.add_argument('checkpoint', help='a checkpoint of that config')
    parser.add_argument('--img-dir', help='use the images in this folder '
                        'instead of the config\'s training set')
    parser.add_argument('--num', type=int, default=4, help='rows')
    parser.add_argument('--out', default='reconstruction.png')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed for crops and masks')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def _samples(cfg: Config, img_dir: str, num: int) -> list:
    pipeline = cfg.train_dataloader.dataset.pipeline
    if img_dir:
        files = sorted(f for f in os.listdir(img_dir)
                       if f.lower().endswith(IMG_EXTS))[:num]
        if not files:
            raise SystemExit(f'error: no images ({", ".join(IMG_EXTS)}) in '
                             f'{img_dir}')
        transform = Compose(pipeline)
        return [transform(dict(img_path=osp.join(img_dir, f)))
                for f in files]
    check_dataset_paths(cfg, ['train_dataloader'])
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    return [dataset[i] for i in range(min(num, len(dataset)))]


def main(argv=None) -> str:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    try:
        batch = default_collate(_samples(cfg, args.img_dir, args.num))
    except FileNotFoundError as err:
        raise SystemExit(f'error: {err}') from None
    if cfg.get('data_preprocessor'):  # as the Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'reconstruct'):
        raise SystemExit(f'error: {type(model).__name__} has no '
                         f'reconstruct(); use a UM-MAE config.')
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model.to(args.device)
    results = reconstruct_batch(model, batch)
    pre = model.data_preprocessor
    out = save_reconstruction_figure(
        results, pre.mean, pre.std, args.out, args.num,
        title=osp.basename(args.checkpoint))
    print(f'saved {out}')
    return out


if __name__ == '__main__':
    main()
