"""The pre-norm transformer block shared by the UM Swin and PVT backbones."""
from typing import Optional

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor


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
