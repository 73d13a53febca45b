"""mmumae registers in mmpretrain's registries only; mmdet and mmseg configs
name its classes across scopes (``type='mmpretrain.UMSwinTransformer'``),
which builds the very same class in every scope."""
import pytest
import torch
from mmengine.registry import DefaultScope

import mmumae  # noqa: F401  (registers everything)
from mmumae.engine.optimizers import DenseLayerDecayOptimWrapperConstructor
from mmumae.models.backbones.um_swin import UMSwinTransformer

TINY = dict(
    arch=dict(embed_dims=32, depths=[1, 1], num_heads=[1, 2]),
    window_size=4,
    out_indices=(0, 1))


def _registry(scope, name='MODELS'):
    module = {'mmpretrain': 'mmpretrain.registry', 'mmdet': 'mmdet.registry',
              'mmseg': 'mmseg.registry'}[scope]
    return getattr(__import__(module, fromlist=[name]), name)


def _local(registry, name):
    """Found in this registry's own table (not through a parent or a
    sibling scope)?"""
    return registry.get(name) is not None and name in registry.module_dict


def test_registered_in_mmpretrain_only():
    assert _registry('mmpretrain').module_dict['UMSwinTransformer'] \
        is UMSwinTransformer
    for scope in ('mmdet', 'mmseg'):
        assert 'UMSwinTransformer' not in _registry(scope).module_dict
        assert 'DenseLayerDecayOptimWrapperConstructor' not in _registry(
            scope, 'OPTIM_WRAPPER_CONSTRUCTORS').module_dict
    assert _local(
        _registry('mmpretrain', 'OPTIM_WRAPPER_CONSTRUCTORS'),
        'DenseLayerDecayOptimWrapperConstructor')


@pytest.mark.parametrize('scope', ('mmpretrain', 'mmdet', 'mmseg'))
def test_cross_scope_type_builds_the_same_class(scope):
    registry = _registry(scope)
    name = 'UMSwinTransformer' if scope == 'mmpretrain' \
        else 'mmpretrain.UMSwinTransformer'
    with DefaultScope.overwrite_default_scope(scope):
        assert DefaultScope.get_current_instance().scope_name == scope
        model = registry.build(dict(TINY, type=name))
        constructor = _registry(scope, 'OPTIM_WRAPPER_CONSTRUCTORS').get(
            'mmpretrain.DenseLayerDecayOptimWrapperConstructor')
    assert type(model) is UMSwinTransformer
    assert constructor is DenseLayerDecayOptimWrapperConstructor
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 32, 32))
    # Dense mode: stride-4 patches, then one 2x downsampling.
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 8), (2, 64, 4, 4)]


@pytest.mark.parametrize('scope', ('mmdet', 'mmseg'))
def test_unscoped_name_in_a_dense_scope_is_not_found(scope):
    """Without the ``mmpretrain.`` prefix an mmdet/mmseg config does not
    find the class in its own scope: the shipped configs use the prefix."""
    with DefaultScope.overwrite_default_scope(scope):
        with pytest.raises(KeyError, match='UMSwinTransformer'):
            _registry(scope).build(dict(TINY, type='UMSwinTransformer'))
