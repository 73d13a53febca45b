"""The pre-norm transformer block shared by the UM Swin and PVT backbones."""
from typing import Callable, Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule, ModuleList
from torch import Tensor


class AttentionBase(BaseModule):
    """What every attention of the UM backbones shares: heads, the output
    projection, dropouts and the fused attention call.

    Subclasses add their q/k/v projections and call :meth:`attend`.

    Args:
        embed_dims (int): Number of channels.
        num_heads (int): Number of heads.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Output dropout. Defaults to 0.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self,
               q: Tensor,
               k: Tensor,
               v: Tensor,
               bias: Optional[Tensor] = None) -> Tensor:
        """``(..., heads, N, d)`` queries, keys, values -> ``(..., N, C)``
        projected output; ``bias`` is added to the attention logits."""
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(-3, -2).flatten(-2)
        return self.proj_drop(self.proj(out))


class PreNormBlock(BaseModule):
    """``x + DropPath(attn(norm1(x)))``, then ``x + DropPath(FFN(norm2(x)))``.

    The attention module is a parameter: it receives the normalised tokens
    and whatever extra arguments :meth:`forward` gets (the window geometry
    for Swin, the map size and reduction ratio for PVT) and returns a
    tensor of the same shape. The FFN is mmcv's ``FFN`` (Linear, GELU,
    dropout, Linear, dropout) with the residual and DropPath inside it.

    Args:
        embed_dims (int): Number of channels.
        attn (nn.Module): Attention module, called as
            ``attn(norm1(x), *args)``.
        feedforward_channels (int): Hidden width of the FFN.
        drop_rate (float): Dropout inside the FFN. Defaults to 0.
        drop_path_rate (float): Stochastic depth of both residual branches.
            Defaults to 0.
        act_cfg (dict): FFN activation. Defaults to ``dict(type='GELU')``.
        norm_cfg (dict): Config of ``norm1``/``norm2``. Defaults to
            ``dict(type='LN')`` (eps 1e-5, as the reference).
        with_cp (bool): Gradient checkpointing of the whole block.
            Defaults to False.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 attn: nn.Module,
                 feedforward_channels: int,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        drop_path = dict(type='DropPath', drop_prob=drop_path_rate) \
            if drop_path_rate > 0 else None
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = attn
        self.drop_path = build_dropout(drop_path) if drop_path \
            else nn.Identity()
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(
            embed_dims,
            feedforward_channels,
            num_fcs=2,
            act_cfg=act_cfg,
            ffn_drop=drop_rate,
            dropout_layer=drop_path,
            add_identity=True)

    def _forward(self, x: Tensor, *args) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), *args))
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: Tensor, *args) -> Tensor:
        """``x`` (tokens, channels last) -> same shape."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, *args, use_reentrant=False)
        return self._forward(x, *args)


def build_blocks(embed_dims: int,
                 attn: Callable[[], nn.Module],
                 drop_path_rates: Sequence[float],
                 mlp_ratio: float = 4.,
                 drop_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False) -> ModuleList:
    """One :class:`PreNormBlock` per drop-path rate, each with a fresh
    attention module ``attn()``."""
    return ModuleList([
        PreNormBlock(
            embed_dims,
            attn(),
            int(embed_dims * mlp_ratio),
            drop_rate=drop_rate,
            drop_path_rate=rate,
            norm_cfg=norm_cfg,
            with_cp=with_cp) for rate in drop_path_rates
    ])
