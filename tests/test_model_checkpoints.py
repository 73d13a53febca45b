"""Checkpoints saved by mmumae 0.1 (before the argument rename) load into
the current models with the same keys and give the same loss.

``data/pre_rename_checkpoint/tiny_models.pth`` holds tiny Swin, stock-Swin,
PVT and ViT models built from the shipped configs by that version (see the
README there), a fixed batch with its masks, and each model's loss.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import mmumae  # noqa: F401
from mmumae.registry import MODELS

REPO = Path(__file__).resolve().parents[1]
SAVED = torch.load(
    REPO / 'tests/data/pre_rename_checkpoint/tiny_models.pth',
    weights_only=True)


@pytest.mark.parametrize('name', sorted(SAVED['models']))
def test_pre_rename_checkpoint_loads_and_gives_the_same_loss(name):
    """The current config, at the same tiny size, builds a model whose
    state dict has exactly the saved keys; with the saved weights its loss
    on the saved batch is the saved loss."""
    saved = SAVED['models'][name]
    cfg = Config.fromfile(str(REPO / saved['config']))
    cfg.merge_from_dict(saved['options'])
    model = MODELS.build(cfg.model).eval()
    result = model.load_state_dict(saved['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        loss = model.masked_loss(SAVED['inputs'].float(), SAVED['mask'],
                                 SAVED['sm_mask'])
    torch.testing.assert_close(loss, saved['loss'], rtol=1e-5, atol=1e-6)
