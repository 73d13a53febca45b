"""Forward FLOPs per image of the training loss.

:class:`torch.utils.flop_counter.FlopCounterMode` on one batch-1 forward of
``model.loss`` (encoder, decoder and head; a multiply-add counts as 2 FLOPs),
with a formula for the CPU's fused attention kernel, which torch's counter
does not know.
"""
from typing import Dict, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode


def _attention_flop(query_shape, key_shape, value_shape, *args,
                    out_shape=None, **kwargs) -> int:
    """``q @ k^T`` and ``attn @ v`` of a fused attention kernel (2/MAC)."""
    *batch, q_len, dims = query_shape
    k_len, v_dims = key_shape[-2], value_shape[-1]
    n = 1
    for d in batch:
        n *= d
    return 2 * n * q_len * k_len * (dims + v_dims)


def extra_flop_formulas() -> dict:
    """FLOP formulas torch's counter lacks.

    torch counts the CUDA fused attention kernels but not the CPU one
    (``_scaled_dot_product_flash_attention_for_cpu``), which
    ``F.scaled_dot_product_attention`` uses on the CPU whenever it can
    (attention without a trainable bias: mmpretrain's decoder blocks, PVT,
    ViT): those matmuls would count 0 on a CPU and not on a GPU.
    """
    op = getattr(torch.ops.aten,
                 '_scaled_dot_product_flash_attention_for_cpu', None)
    return {} if op is None else {op: _attention_flop}


def count_forward_flops(model, data: dict) -> Tuple[int, Dict[str, int],
                                                    Dict[str, Dict[str, int]]]:
    """Forward FLOPs of the loss on a batch-1 ``data`` (preprocessed).

    Returns the total, the total per top-level module (``backbone``,
    ``neck``, ``head``) and, per top-level module, the FLOPs per operator
    (e.g. ``addmm``, ``convolution``).
    """
    counter = FlopCounterMode(display=False,
                              custom_mapping=extra_flop_formulas())
    with torch.no_grad(), counter:
        model(**data, mode='loss')
    by_module, by_op = {}, {}
    for name, ops in counter.get_flop_counts().items():
        if name.count('.') != 1:  # 'SimMIM.backbone': a direct child
            continue
        child = name.split('.')[1]
        by_module[child] = int(sum(ops.values()))
        by_op[child] = {str(op).split('.')[-1]: int(v)
                        for op, v in ops.items()}
    return int(counter.get_total_flops()), by_module, by_op
