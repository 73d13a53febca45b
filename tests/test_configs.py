"""Every config in configs/ loads and builds its model in its own scope.

The configs are globbed, so configs added later are covered. The ImageNet
fine-tuning configs are also checked against the recipe of docs/method.md
("Fine-tuning and transfer recipe") value by value.
"""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import DefaultScope
from tool_helpers import plain_config

import mmumae  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# configs/studies/*/study_*.py describe studies, not models
# (tests/test_study.py checks them)
CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py')
                 if '_base_' not in p.parts
                 and not p.name.startswith('study_'))
FINETUNE_IN1K = [p for p in CONFIGS
                 if p.parent.name == 'finetune' and 'in1k' in p.name]
MAE = [p for p in CONFIGS if p.name.startswith('mae_vit-base-p16_')]

RECIPE = {
    ('UMSwinTransformer', 'tiny'): (0.85, 0.1),
    ('SwinTransformer', 'tiny'): (0.85, 0.1),  # the stock-Swin variant
    ('UMSwinTransformer', 'large'): (0.7, 0.2),
    ('UMPVT', 'small'): (0.85, 0.1),
    ('VisionTransformer', 'base'): (0.8, 0.1),
}


def _registry(scope: str):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    else:
        from mmpretrain.registry import MODELS
        from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return MODELS


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO / 'configs'))


def test_configs_found():
    folders = {p.parent.name for p in CONFIGS}
    assert {'ummae', 'simmim', 'finetune'} <= folders
    assert len(FINETUNE_IN1K) == 5


@pytest.mark.parametrize('path', CONFIGS, ids=_rel)
def test_config_builds(path):
    cfg = Config.fromfile(str(path))
    scope = cfg.get('default_scope', 'mmpretrain')
    assert scope in ('mmpretrain', 'mmdet', 'mmseg'), scope
    models = _registry(scope)
    with DefaultScope.overwrite_default_scope(scope):
        model = models.build(cfg.model)
    assert type(model).__name__ == cfg.model.type
    # mmdet/mmseg configs name mmumae's backbones across scopes
    # ('mmpretrain.UMSwinTransformer')
    assert type(model.backbone).__name__ == \
        cfg.model.backbone.type.split('.')[-1]


@pytest.mark.parametrize('path', FINETUNE_IN1K, ids=_rel)
def test_finetune_recipe(path):
    """docs/method.md, fine-tuning recipe: the values a user reproducing
    the paper relies on."""
    cfg = Config.fromfile(str(path))
    model, backbone = cfg.model, cfg.model.backbone
    assert cfg.train_cfg.max_epochs == 100
    batch = 8 * cfg.train_dataloader.batch_size
    assert batch == cfg.auto_scale_lr.base_batch_size == 1024
    optim = cfg.optim_wrapper.optimizer
    assert optim.type == 'AdamW' and optim.weight_decay == 0.05
    assert optim.lr == pytest.approx(5e-4 * batch / 256)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert (cfg.optim_wrapper.constructor ==
            'LearningRateDecayOptimWrapperConstructor')
    # (layer decay, drop path) of the reference's fine-tuning commands
    decay, drop_path = RECIPE[backbone.type, backbone.get('arch')]
    assert backbone.drop_path_rate == drop_path
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    assert model.head.loss.label_smooth_val == 0.1
    assert [(a.type, a.alpha) for a in model.train_cfg.augments] == [
        ('Mixup', 0.8), ('CutMix', 1.0)]
    steps = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert steps['RandomErasing'].erase_prob == 0.25
    assert steps['RandAugment'].magnitude_level == 9
    size = 224 if backbone.type == 'VisionTransformer' else 256
    assert steps['RandomResizedCrop'].scale == size
    if backbone.type == 'UMSwinTransformer':
        assert backbone.window_size == 16
    elif backbone.type == 'UMPVT':
        assert tuple(backbone.sr_ratios) == (8, 4, 2, 1)
        assert backbone.learnable_pos_embed is True
    init = backbone.init_cfg
    assert init.type == 'Pretrained' and init.prefix == 'backbone.'
    assert init.checkpoint.startswith('work_dirs/ummae_')


@pytest.mark.parametrize('path', MAE, ids=_rel)
def test_mae_baseline_is_mmpretrains_model(path):
    """The stock-MAE baseline trains mmpretrain's MAE ViT-B/16 model base
    as shipped, its init_cfg included."""
    stock = get_config('mmpretrain::_base_/models/mae_vit-base-p16.py')
    model = Config.fromfile(str(path)).model
    assert plain_config(model.to_dict()) == plain_config(stock.model.to_dict())
    assert model.init_cfg  # the initialisation a copy once dropped
