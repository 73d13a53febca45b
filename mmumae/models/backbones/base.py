"""The UM encoder interface, and what the pyramid backbones share."""
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.runner import CheckpointLoader, load_state_dict
from torch import Tensor

from ..utils import (SizeCache, check_patch_mask, expand_patch_mask,
                     gather_patches, kept_patch_ids, original_token_coords,
                     size_rule, take_patch_values)


class CompactInput(NamedTuple):
    """What an encoder needs to run UM-MAE.

    Attributes:
        image (Tensor): ``(B, C, H/2, W/2)`` compact image of kept patches.
        sm_tokens (Tensor): ``(B, H/2s, W/2s)`` bool, secondary-masked
            first-stage tokens of the compact grid (``s``: patch size).
        coords (Tensor): ``(B, H/2s, W/2s, 2)`` long, their original
            (row, col) in first-stage token units.
        full_hw (tuple): First-stage token grid of the full image.
    """
    image: Tensor
    sm_tokens: Tensor
    coords: Tensor
    full_hw: Tuple[int, int]


class UMEncoderMixin:
    """The interface of every UM encoder, which :class:`UMMAE` checks.

    Put before the library base class. An encoder calls :meth:`_setup_um`
    (``patch_size``: patch-embedding stride, as in mmpretrain;
    ``mask_patch_size``: pixel size of a mask patch), has ``mask_token``,
    ``out_indices`` and ``num_features`` (or overrides :attr:`out_stride`,
    :attr:`out_channels`) and implements :meth:`_forward_um` and
    :meth:`_forward_full`. It gets :attr:`out_stride` and
    :attr:`out_channels` of the map UM mode hands the decoder,
    :meth:`compact_input`, a three-mode :meth:`forward`,
    :attr:`default_init_cfg` (pass it when ``init_cfg`` is None),
    :meth:`init_weights` (``Pretrained`` loaded with key checks) and one
    cache of size-only tensors, ``_size_cache``.
    """
    #: Used when ``init_cfg`` is None: truncated-normal linears (std .02),
    #: unit LayerNorms, as MAE.
    default_init_cfg: List[dict] = [
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ]
    #: Whether a mask without ``sm_mask`` runs SimMIM on the full grid.
    simmim_mode: bool = False
    #: State-dict names the load pre-hooks resize (shapes not checked).
    resized_on_load: Tuple[str, ...] = ('pos_embed', )

    def _setup_um(self, patch_size: int, mask_patch_size: int) -> None:
        """Check and set the two patch sizes; make the size cache."""
        if patch_size <= 0 or mask_patch_size % patch_size:
            raise ValueError(
                f'{type(self).__name__}: mask_patch_size={mask_patch_size} '
                f'must be a multiple of patch_size={patch_size}.')
        self.patch_size = patch_size
        self.mask_patch_size = mask_patch_size
        self.tokens_per_patch = mask_patch_size // patch_size
        self._size_cache = SizeCache(128)

    @property
    def out_stride(self) -> int:
        """Pixel stride of the last output map."""
        return self.patch_size * 2**max(self.out_indices)

    @property
    def out_channels(self) -> int:
        """Channels of the last output map."""
        return self.num_features[max(self.out_indices)]

    def compact_input(self,
                      x: Tensor,
                      mask: Tensor,
                      sm_mask: Tensor,
                      kept_ids: Optional[Tensor] = None) -> CompactInput:
        """Gather the kept patches (UM mode) and track where they came from.

        Args:
            x (Tensor): Images ``(B, C, H, W)``.
            mask (Tensor): ``(B, H/p, W/p)`` bool uniform mask.
            sm_mask (Tensor): ``(B, H/p, W/p)`` bool secondary mask.
            kept_ids (Tensor, optional): ``kept_patch_ids(mask)`` when the
                caller has them. Defaults to None (computed here).
        """
        name = type(self).__name__
        p = check_patch_mask(mask, x.shape[-2:], name)
        gh, gw = mask.shape[-2:]
        if p != self.mask_patch_size:
            raise ValueError(
                f'{name}: the mask grid implies {p}-px mask patches but the '
                f'encoder uses {self.mask_patch_size}-px ones; set the mask '
                f'generator mask_patch_size={self.mask_patch_size}.')
        if gh % 2 or gw % 2:
            raise ValueError(
                size_rule(x.shape[-2:], 2 * p, f'{name}: UM-MAE (2x2 blocks '
                          f'of {p}-px mask patches)') +
                '; set the mask generator input_size accordingly.')
        t = self.tokens_per_patch
        ids = kept_patch_ids(mask, name) if kept_ids is None else kept_ids
        compact_hw = (gh // 2, gw // 2)
        sm = take_patch_values(sm_mask.bool(), ids).view(-1, *compact_hw)
        return CompactInput(
            gather_patches(x, ids, p, compact_hw), expand_patch_mask(sm, t),
            original_token_coords(ids, gw, compact_hw, t), (gh * t, gw * t))

    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                sm_mask: Optional[Tensor] = None,
                kept_ids: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Run the encoder in one of three modes.

        Args:
            x (Tensor): Images ``(B, C, H, W)``.
            mask (Tensor, optional): ``(B, H/p, W/p)`` bool on the mask-patch
                grid, True = removed. None: dense mode.
            sm_mask (Tensor, optional): ``(B, H/p, W/p)`` bool, secondary
                masking of kept patches. Given (UM-MAE), ``mask`` must be a
                uniform mask and the encoder runs on the compact image;
                omitted (SimMIM), masked patches become mask tokens on the
                full grid.
            kept_ids (Tensor, optional): ``kept_patch_ids(mask)`` when the
                caller already has them (UM mode). Defaults to None.

        Returns:
            tuple[Tensor]: ``(B, C_i, H_i, W_i)`` for each out index; in UM
            mode the maps are on the compact grid.
        """
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(f'{name}: expected (B, C, H, W) images, got '
                             f'shape {tuple(x.shape)}.')
        if mask is not None and sm_mask is not None:
            return self._forward_um(
                self.compact_input(x, mask, sm_mask, kept_ids))
        if mask is not None and not self.simmim_mode:
            raise ValueError(
                f'{name}: UM mode needs both mask and sm_mask '
                '(UniformMaskGenerator; PackInputs(algorithm_keys=["mask", '
                '"sm_mask"])); a mask alone (SimMIM) is not supported here.')
        return self._forward_full(x, mask)

    def _forward_um(self, c: CompactInput) -> Tuple[Tensor, ...]:
        """Encode the compact input of UM mode."""
        raise NotImplementedError

    def _forward_full(self, x: Tensor,
                      mask: Optional[Tensor]) -> Tuple[Tensor, ...]:
        """Encode the full image; ``mask`` marks the patches replaced by the
        mask token (SimMIM), None in dense mode."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', ...)`` with key checks, or
        run the family's initialisation, then the mask token (truncated
        normal) and :meth:`_extra_init`."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self._load_pretrained(cfg)
            self.is_init = True
            return
        super().init_weights()
        trunc_normal_(self.mask_token, std=.02)
        self._extra_init()

    def _extra_init(self) -> None:
        """Family-specific initialisation after the common one."""

    def _load_pretrained(self, cfg: dict) -> None:
        """Load a checkpoint with mmengine, failing clearly if it does not
        fit.

        Keys are taken as mmengine's prefix loading does (``module.``
        stripped, then only the ``init_cfg.prefix`` keys, stripped). Every
        weight but :meth:`_allowed_missing` ones must be there, in the
        model's shape unless a load pre-hook resizes it
        (:attr:`resized_on_load`).
        """
        name, path = type(self).__name__, cfg['checkpoint']
        ckpt = CheckpointLoader.load_checkpoint(
            path, map_location=cfg.get('map_location', 'cpu'))
        state = ckpt.get('state_dict', ckpt)
        state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
        prefix = cfg.get('prefix')
        if prefix:
            prefix = prefix.rstrip('.') + '.'
            if not any(k.startswith(prefix) for k in state):
                raise KeyError(
                    f'{name}: no key of {path} starts with prefix {prefix!r} '
                    f'(its keys look like: {", ".join(list(state)[:3])}); set '
                    f'init_cfg.prefix to the module that holds the backbone, '
                    f'or drop it for a bare backbone checkpoint.')
            # as mmengine's prefix loading: only the prefixed keys, stripped
            state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix)}
        own = self.state_dict()
        fresh = [k for k in own if k not in state]
        missing = [k for k in fresh if k not in self._allowed_missing()]
        shapes = [
            k for k in own if k in state and not k.endswith(
                self.resized_on_load) and state[k].shape != own[k].shape
        ]
        if missing or shapes:
            hint = ("the checkpoint holds a whole model: set "
                    "init_cfg.prefix='backbone.'" if not prefix and any(
                        k.startswith('backbone.') for k in state) else
                    'check that arch (and patch/mask sizes) match the '
                    'pre-training config')
            what = [f'{len(missing)} missing (e.g. {missing[:3]})'] \
                if missing else []
            what += [
                f'{len(shapes)} of another shape (e.g. {k}: '
                f'{list(state[k].shape)} in the checkpoint vs '
                f'{list(own[k].shape)} in the model)' for k in shapes[:1]
            ]
            raise ValueError(f'{name}: checkpoint {path} does not fit this '
                             f'backbone: {"; ".join(what)}; {hint}.')
        # the load pre-hooks (a pos_embed resized or dropped) see every key
        load_state_dict(self, state, strict=False, logger='current')
        print_log(
            f'{name}: loaded {len(own) - len(fresh)} tensors from {path}' +
            (f'; not in the checkpoint, kept at their init: {fresh}'
             if fresh else ''), logger='current')

    def _allowed_missing(self) -> set:
        """Keys a checkpoint may lack: output norms of stages it did not
        output."""
        return {f'norm{i}.{p}' for i in self.out_indices
                for p in ('weight', 'bias')}


class UMBackbone(UMEncoderMixin, BaseModule):
    """Base of :class:`UMSwinTransformer` and :class:`UMPVT`.

    The UM encoder interface (:class:`UMEncoderMixin`) plus what both
    families share: arch parsing, the SimMIM token mask, the output norms
    ``norm{i}``, freezing and layer depths. Subclasses set ``arch_zoo``,
    ``stem_names`` (parameters at layer depth 0) and ``stage_entry`` (the
    per-stage downsampling module), build
    ``self.stages`` (``stages.{i}.blocks.{j}`` names), ``self.mask_token``
    and ``self.num_features``, call :meth:`_add_output_norms` and
    :meth:`_freeze_stages`, and implement :meth:`_forward_um` and
    :meth:`_forward_full`.

    Args:
        arch (str | dict): A name in ``arch_zoo`` or a custom dict.
        patch_size (int): Stride of the first patch embedding. Defaults to 4.
        mask_patch_size (int): Pixel size of a mask patch (the masks' grid
            unit), a multiple of ``patch_size``. Defaults to 16.
        out_indices (int | Sequence[int]): Stages whose normalised outputs
            are returned. Defaults to ``(3, )``.
        frozen_stages (int): Freeze the stem and stages up to this index;
            -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep batch-norm layers in eval mode. Defaults to
            False.
        with_cp (bool): Gradient checkpointing in every block. Defaults to
            False.
        qkv_bias (bool): Bias for q, k, v. Defaults to True.
        drop_rate (float): Dropout after the position embedding, in the
            FFNs and after the attention projections. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        drop_path_rate (float): Stochastic depth, rising linearly over the
            blocks. Defaults to 0.1.
        norm_cfg (dict): Norms inside the blocks (``norm1``, ``norm2``,
            PVT's spatial reduction). Defaults to ``dict(type='LN')``
            (eps 1e-5, as the reference).
        outer_norm_cfg (dict): The output norms ``norm{i}`` (and Swin's
            patch-embedding and downsampling norms). Defaults to
            ``dict(type='LN', eps=1e-6)`` (as the reference).
        init_cfg (dict | list, optional): Initialisation config; a
            ``Pretrained`` one is loaded with key checks. Defaults to None
            (:attr:`default_init_cfg`).
    """
    arch_zoo: Dict[str, dict] = {}
    required_arch_keys: Sequence[str] = ('embed_dims', 'depths', 'num_heads')
    stem_names: Sequence[str] = ('mask_token', )
    stage_entry: str = 'downsample'
    simmim_mode = True

    def __init__(self,
                 arch: Union[str, dict],
                 patch_size: int = 4,
                 mask_patch_size: int = 16,
                 out_indices: Union[int, Sequence[int]] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 norm_cfg: dict = dict(type='LN'),
                 outer_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg or self.default_init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self._setup_geometry(self.arch_settings, patch_size, mask_patch_size,
                             out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.outer_norm_cfg = outer_norm_cfg
        self.drop_after_pos = nn.Dropout(drop_rate)
        #: options of :func:`build_blocks` and of the attention modules
        self.block_cfg = dict(drop_rate=drop_rate, norm_cfg=norm_cfg,
                              with_cp=with_cp)
        self.attn_cfg = dict(qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                             proj_drop=drop_rate)
        self.drop_path_rates = self._drop_path_rates(drop_path_rate)

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

    def _setup_geometry(self, arch: dict, patch_size: int,
                        mask_patch_size: int,
                        out_indices: Union[int, Sequence[int]]) -> None:
        """Set depths, heads, patch sizes and out indices, checking them."""
        self.depths = list(arch['depths'])
        self.num_heads = list(arch['num_heads'])
        self.num_stages = len(self.depths)
        if len(self.num_heads) != self.num_stages:
            raise ValueError(f'{self._name}: arch depths and num_heads must '
                             f'have the same length.')
        self._setup_um(patch_size, mask_patch_size)
        n = self.num_stages
        out_indices = [out_indices] if isinstance(out_indices, int) \
            else out_indices
        if not all(-n <= i < n for i in out_indices):
            raise ValueError(f'{self._name}: out_indices {out_indices} are '
                             f'out of range for {n} stages.')
        self.out_indices = tuple(i % n for i in out_indices)

    def _drop_path_rates(self, rate: float) -> List[List[float]]:
        """Stochastic depth rising linearly over all blocks, per stage."""
        dpr = torch.linspace(0, rate, sum(self.depths)).tolist()
        starts = [sum(self.depths[:i]) for i in range(self.num_stages)]
        return [dpr[s:s + d] for s, d in zip(starts, self.depths)]

    def _add_output_norms(self) -> None:
        """One norm ``norm{i}`` per out index, over ``num_features[i]``."""
        for i in self.out_indices:
            self.add_module(
                f'norm{i}',
                build_norm_layer(self.outer_norm_cfg,
                                 self.num_features[i])[1])

    def _output(self, i: int, x: Tensor) -> Tensor:
        """Normalise stage ``i``'s ``(B, H, W, C)`` map -> ``(B, C, H, W)``."""
        return getattr(self, f'norm{i}')(x).permute(0, 3, 1, 2).contiguous()

    def _token_mask(self, x: Tensor,
                    mask: Optional[Tensor]) -> Optional[Tensor]:
        """Token-level ``(B, H/s, W/s)`` mask of a SimMIM (full-grid) mask;
        None in dense mode."""
        if mask is None:
            return None
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

    def _freeze_stages(self) -> None:
        """Freeze the stem, stages up to ``frozen_stages`` and their output
        norms."""
        if self.frozen_stages < 0:
            return
        stem = [getattr(self, n, None) for n in self.stem_names]
        for param in stem:
            if isinstance(param, nn.Parameter):
                param.requires_grad = False
        frozen = [m for m in stem if isinstance(m, nn.Module)]
        frozen += list(self.stages[:self.frozen_stages + 1])
        frozen += [getattr(self, f'norm{i}') for i in self.out_indices
                   if i <= self.frozen_stages]
        for m in frozen:
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
                # A stage's entry (patch merging / embedding) shares the
                # depth of the stage's first block, as in the reference
                # (its downsample belongs to that block); stage 0's is the
                # stem.
                return sum(self.depths[:stage]) + (stage > 0), num_layers
            return sum(self.depths[:stage]) + int(parts[3]) + 1, num_layers
        return num_layers - 1, num_layers
