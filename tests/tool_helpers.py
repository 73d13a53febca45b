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
