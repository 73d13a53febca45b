"""Helpers shared by the tests that run tools/ end to end."""
import importlib.util
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / 'configs' / '_base_' / 'default_runtime.py'

# A 2-class ViT classifier on 32-px images (stock mmpretrain classes); test
# files add their dataloaders. Format with runtime=RUNTIME.
CLASSIFIER_MODEL = """
_base_ = ['{runtime}']
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                  feedforward_channels=64),
        img_size=32, patch_size=8),
    head=dict(
        type='VisionTransformerClsHead', num_classes=2, in_channels=32,
        loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(
    num_classes=2, mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], to_rgb=True)
"""

# A train_dataloader over an unlabeled CustomDataset folder (pre-training);
# format with batch, data (the folder) and steps (the pipeline steps between
# loading and packing, as config text), e.g. with folder_loader().
FOLDER_LOADER = """train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset', data_root='{data}', with_label=False,
        pipeline=[dict(type='SafeLoadImageFromFile'), {steps}]))
"""

# MAE with a one-layer 32-dim ViT on 32-px crops (stock mmpretrain classes);
# format with loader (a train_dataloader, see mae_model()).
MAE_MODEL = """
model = dict(
    type='MAE',
    backbone=dict(
        type='MAEViT',
        arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                  feedforward_channels=64),
        img_size=32, patch_size=8, mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder', num_patches=16, patch_size=8, in_chans=3,
        embed_dim=32, decoder_embed_dim=16, decoder_depth=1,
        decoder_num_heads=2, mlp_ratio=2.),
    head=dict(
        type='MAEPretrainHead', norm_pix=True, patch_size=8,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')))
data_preprocessor = dict(
    type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], to_rgb=True)
{loader}"""

# Iteration-based MAE pre-training, logging every iteration; format with
# runtime, model (mae_model()), max_iters, interval and keep (checkpoint
# interval and max_keep_ckpts).
MAE_ITERS = """
_base_ = ['{runtime}']
{model}
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters})
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(interval={interval}, by_epoch=False,
                    max_keep_ckpts={keep}))
log_processor = dict(by_epoch=False)
"""


def folder_loader(data: Path, batch: int, steps: str) -> str:
    """A train_dataloader (config text) over the images under ``data``."""
    return FOLDER_LOADER.format(data=data, batch=batch, steps=steps)


def mae_model(data: Path, batch: int = 2) -> str:
    """:data:`MAE_MODEL` reading random 32-px crops of ``data``."""
    return MAE_MODEL.format(loader=folder_loader(
        data, batch, "dict(type='RandomResizedCrop', scale=32, "
        "crop_ratio_range=(0.2, 1.0)), dict(type='RandomFlip', prob=0.5), "
        "dict(type='PackInputs')"))


def load_tool(path: Path, name: str):
    """Import a tools/ script as a module (for its functions)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image_folders(root: Path, class_sizes: Dict[str, int],
                        hw: Tuple[int, int]) -> Path:
    """Random JPEGs in CustomDataset folder format, ``root/<class>/i.JPEG``."""
    rng = np.random.default_rng(0)
    for cls, count in class_sizes.items():
        (root / cls).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f'{i}.JPEG')
    return root


def log_text(work_dir: Path) -> str:
    """The text of every run log mmengine wrote under work_dir."""
    logs = sorted(work_dir.glob('*/*.log'))
    assert logs, f'no log under {work_dir}'
    return '\n'.join(p.read_text() for p in logs)


def plain_config(cfg):
    """A config as plain dicts and lists, without the ``_scope_`` marks
    mmengine puts on the outer dicts of another package's base."""
    if isinstance(cfg, dict):
        return {k: plain_config(v) for k, v in cfg.items() if k != '_scope_'}
    if isinstance(cfg, (list, tuple)):
        return [plain_config(v) for v in cfg]
    return cfg


def tool_error(tool, *args) -> str:
    """The one line a tool stops with: ``error: ...``, exit status text of
    SystemExit, no traceback and no second line."""
    import pytest
    with pytest.raises(SystemExit) as info:
        tool.main([str(a) for a in args])
    assert isinstance(info.value.code, str), info.value.code
    assert info.value.code.startswith('error: ')
    assert '\n' not in info.value.code
    return info.value.code
