"""What every mmumae backbone shares: archs, out indices, freezing, init."""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from ..utils import (check_patch_mask, expand_patch_mask, gather_patches,
                     kept_patch_ids, original_token_coords, take_patch_values)


class CompactInput(NamedTuple):
    """What a pyramid encoder needs to run UM-MAE.

    Attributes:
        image (Tensor): ``(B, C, H/2, W/2)`` compact image of kept patches.
        sm_tokens (Tensor): ``(B, H/2p, W/2p)`` bool, secondary-masked
            first-stage tokens of the compact grid.
        coords (Tensor): ``(B, H/2p, W/2p, 2)`` long, their original
            (row, col) in first-stage token units.
        full_hw (tuple): First-stage token grid of the full image.
    """
    image: Tensor
    sm_tokens: Tensor
    coords: Tensor
    full_hw: Tuple[int, int]


class UMBackbone(BaseModule):
    """Base of :class:`UMSwinTransformer` and :class:`UMPVT`.

    Subclasses set ``arch_zoo``, ``required_arch_keys``, ``stem_names``
    (parameters at layer depth 0) and ``stage_entry`` (the per-stage
    downsampling module), build ``self.stages`` (each with ``.blocks``),
    ``self.mask_token``, ``self.depths`` and ``self.num_stages`` and call
    :meth:`_freeze_stages` at the end of ``__init__``.
    """
    arch_zoo: Dict[str, dict] = {}
    required_arch_keys: Sequence[str] = ('embed_dims', 'depths', 'num_heads')
    stem_names: Sequence[str] = ('mask_token', )
    stage_entry: str = 'downsample'

    def __init__(self,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                raise KeyError(f'{self._name}: arch {arch!r} is not one of '
                               f'{sorted(set(self.arch_zoo))}.')
            return dict(self.arch_zoo[key])
        missing = set(self.required_arch_keys) - set(arch)
        if missing:
            raise KeyError(f'{self._name}: custom arch needs keys '
                           f'{sorted(missing)}.')
        return dict(arch)

    def _parse_out_indices(self, out_indices: Union[int, Sequence[int]],
                           num_stages: int) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        out = []
        for i in out_indices:
            j = i + num_stages if i < 0 else i
            if not 0 <= j < num_stages:
                raise ValueError(f'{self._name}: out index {i} is out of '
                                 f'range for {num_stages} stages.')
            out.append(j)
        return tuple(out)

    def _compact_input(self, x: Tensor, mask: Tensor,
                       sm_mask: Tensor) -> CompactInput:
        """Gather the kept patches (UM mode) and track where they came from.

        Needs ``self.patch_size``, ``self.mask_patch_size`` and
        ``self.tokens_per_patch``.
        """
        p = check_patch_mask(mask, x.shape[-2:], self._name)
        if p != self.mask_patch_size:
            raise ValueError(
                f'{self._name}: the mask grid implies {p}-px mask patches but '
                f'the backbone was built with mask_patch_size='
                f'{self.mask_patch_size}; make them agree.')
        gh, gw = mask.shape[-2:]
        t = self.tokens_per_patch
        ids = kept_patch_ids(mask, self._name)
        compact_hw = (gh // 2, gw // 2)
        sm = take_patch_values(sm_mask.bool(), ids).view(-1, *compact_hw)
        return CompactInput(
            gather_patches(x, ids, p, compact_hw), expand_patch_mask(sm, t),
            original_token_coords(ids, gw, compact_hw, t), (gh * t, gw * t))

    def _simmim_tokens(self, x: Tensor, mask: Tensor) -> Tensor:
        """Token-level ``(B, H/4, W/4)`` mask of a SimMIM (full-grid) mask."""
        p = check_patch_mask(mask, x.shape[-2:], self._name)
        if p % self.patch_size:
            raise ValueError(f'{self._name}: {p}-px mask patches are not a '
                             f'multiple of patch_size={self.patch_size}.')
        return expand_patch_mask(mask.bool(), p // self.patch_size)

    def _apply_mask_token(self, x: Tensor,
                          token_mask: Optional[Tensor]) -> Tensor:
        """Replace masked tokens of ``x`` (``(B, ..., C)``) by the mask token.

        Dense mode (no mask) while training keeps the token in the graph
        with a zero contribution, so that DistributedDataParallel (which by
        default requires a gradient for every trainable parameter) works
        when this backbone is fine-tuned in mmdet/mmseg/mmpretrain.
        """
        token = self.mask_token.to(x.dtype)
        if token_mask is not None:
            return torch.where(token_mask[..., None], token, x)
        if self.training and token.requires_grad and torch.is_grad_enabled():
            return x + token.sum() * 0.
        return x

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f'{self._name}: expected (B, C, H, W) images, '
                             f'got shape {tuple(x.shape)}.')

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', ...)`` with key checks, or
        initialise: truncated-normal linears, unit LayerNorms, then
        :meth:`_extra_init`."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self._load_pretrained(cfg)
            self._is_init = True
            return
        super().init_weights()
        self._init_transformer_weights()
        self._extra_init()

    def _extra_init(self) -> None:
        """Family-specific initialisation after the common one."""

    def _load_pretrained(self, cfg: dict) -> None:
        """Load a checkpoint, failing clearly when its keys do not fit.

        Allowed differences: output norms (``norm{i}``) of stages the
        checkpoint did not output, which keep their default init, and extra
        keys in the checkpoint (e.g. a decoder), which are ignored.
        """
        path = cfg['checkpoint']
        ckpt = _load_checkpoint(path, map_location=cfg.get('map_location',
                                                           'cpu'))
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt,
                                                           dict) else ckpt
        prefix = cfg.get('prefix')
        if prefix:
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            sub = {k[len(prefix):]: v for k, v in state.items()
                   if k.startswith(prefix)}
            if not sub:
                sample = ', '.join(list(state)[:3])
                raise KeyError(
                    f'{self._name}: no key of {path} starts with prefix '
                    f'{prefix!r} (its keys look like: {sample}); set '
                    f'init_cfg.prefix to the module that holds the backbone, '
                    f'or drop it for a bare backbone checkpoint.')
            state = sub
        own = self.state_dict()
        new_norms = {f'norm{i}.{p}' for i in self.out_indices
                     for p in ('weight', 'bias')}
        missing = [k for k in own if k not in state and k not in new_norms]
        shapes = [k for k in own if k in state
                  and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or shapes:
            hint = ("the checkpoint holds a whole model: set "
                    "init_cfg.prefix='backbone.'" if not prefix and any(
                        k.startswith('backbone.') for k in state) else
                    'check that arch (and patch/mask sizes) match the '
                    'pre-training config')
            details = [f'{len(missing)} missing (e.g. {missing[:3]})'] \
                if missing else []
            details += [
                f'{len(shapes)} of another shape (e.g. {k}: checkpoint '
                f'{tuple(state[k].shape)} vs model {tuple(own[k].shape)})'
                for k in shapes[:1]
            ]
            raise ValueError(f'{self._name}: checkpoint {path} does not fit '
                             f'this backbone: {"; ".join(details)}; {hint}.')
        load_state_dict(self, state, strict=False, logger='current')
        fresh = sorted(k for k in new_norms if k not in state)
        print_log(
            f'{self._name}: loaded {len(own) - len(fresh)} tensors from {path}'
            + (f'; new output norms keep their default init: {fresh}'
               if fresh else ''), logger='current')

    def _init_transformer_weights(self) -> None:
        """Truncated-normal linears, unit LayerNorms, the mask token."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.mask_token, std=.02)

    def _frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by ``frozen_stages`` (stem + stages + out norms)."""
        frozen = [getattr(self, n) for n in self.stem_names
                  if isinstance(getattr(self, n), nn.Module)]
        frozen += list(self.stages[:self.frozen_stages + 1])
        frozen += [
            getattr(self, f'norm{i}') for i in self.out_indices
            if i <= self.frozen_stages
        ]
        return frozen

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        self.mask_token.requires_grad = False
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'UMBackbone':
        """Set train mode, keeping frozen stages (and, with ``norm_eval``,
        batch norms) in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Layer depth of a parameter for layer-wise lr decay.

        Used by mmpretrain's ``LearningRateDecayOptimWrapperConstructor``.

        Returns:
            Tuple[int, int]: ``(layer_depth, num_layers)``; 0 is the stem,
            ``num_layers - 1`` the output norms and anything after the
            backbone.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith(tuple(self.stem_names)):
            return 0, num_layers
        if name.startswith('stages.'):
            parts = name.split('.')
            stage = int(parts[1])
            if parts[2] == self.stage_entry:
                return sum(self.depths[:stage]), num_layers
            return sum(self.depths[:stage]) + int(parts[3]) + 1, num_layers
        return num_layers - 1, num_layers
