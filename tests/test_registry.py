"""UMSwinTransformer is one class shared by mmpretrain, mmdet and mmseg, and
builds from a config in each scope."""
import pytest
import torch
from mmengine.registry import DefaultScope

import mmumae  # noqa: F401  (registers everything)
from mmumae.models.backbones.um_swin import UMSwinTransformer

TINY = dict(
    type='UMSwinTransformer',
    arch=dict(embed_dims=32, depths=[1, 1], num_heads=[1, 2]),
    window_size=4,
    out_indices=(0, 1))


def _models_registry(scope):
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    elif scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


@pytest.mark.parametrize('scope', SCOPES)
def test_same_class_in_every_registry(scope):
    registry = _models_registry(scope)
    assert registry.scope == scope
    # The entry is in the scope's own table (not found through a parent or
    # sibling), and it is the very class object, not a copy or subclass.
    assert registry._module_dict['UMSwinTransformer'] is UMSwinTransformer


@pytest.mark.parametrize('scope', SCOPES)
def test_builds_from_config_in_every_scope(scope):
    registry = _models_registry(scope)
    with DefaultScope.overwrite_default_scope(scope):
        assert DefaultScope.get_current_instance().scope_name == scope
        model = registry.build(dict(TINY))
    assert type(model) is UMSwinTransformer
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 32, 32))
    # Dense mode: stride-4 patches, then one 2x downsampling.
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 8), (2, 64, 4, 4)]


def test_scoped_type_name_builds_from_any_registry():
    """A config may name the scope explicitly (``mmdet.UMSwinTransformer``)
    while another scope is the default: mmengine's cross-scope lookup."""
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for scope in ('mmdet', 'mmseg'):
            model = MODELS.build(dict(TINY, type=f'{scope}.UMSwinTransformer'))
            assert type(model) is UMSwinTransformer
