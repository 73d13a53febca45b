"""Layer-wise lr decay for detectors and segmentors on mmumae backbones."""
from functools import partial
from typing import Callable, List, Optional

from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn


class DenseLayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-wise lr decay for any model with a ``backbone``.

    mmpretrain's :class:`LearningRateDecayOptimWrapperConstructor` asks the
    whole model for ``get_layer_depth``; classifiers have it, mmdet's
    detectors and mmseg's segmentors do not. This constructor uses the
    model's own method when there is one and otherwise the backbone's
    (``get_layer_depth(name, prefix='backbone.')``): backbone blocks get
    ``layer_decay_rate ** (num_layers - 1 - depth)``, the neck and heads
    (outside the prefix) the full lr. ``paramwise_cfg`` as mmpretrain's.
    Registered in mmpretrain's registry: mmdet/mmseg configs name it
    ``constructor='mmpretrain.DenseLayerDecayOptimWrapperConstructor'``.
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   get_layer_depth: Optional[Callable] = None,
                   **kwargs) -> None:
        """Add the parameters of ``module`` with their lr scales."""
        if get_layer_depth is None and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    f'{type(module).__name__} has neither get_layer_depth nor '
                    'a backbone with one; layer-wise lr decay needs an mmumae '
                    'backbone (or use the default constructor).')
            get_layer_depth = partial(
                backbone.get_layer_depth, prefix=f'{prefix}backbone.')
        super().add_params(params, module, prefix, get_layer_depth, **kwargs)


OPTIM_WRAPPER_CONSTRUCTORS.register_module(
    module=DenseLayerDecayOptimWrapperConstructor)
