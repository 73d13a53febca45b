"""The UM-MAE training step under ``torch.compile(fullgraph=True)``.

The paper configs (Swin-T and PVT-S UM-MAE), shrunk with
``--cfg-options``-style overrides, compile into one graph forward and
backward: no graph break and no data-dependent shape (``nonzero``,
boolean-mask indexing, ``.item()``, value checks). On a GPU each of those
would be a host-device sync. ``aot_eager`` traces forward and backward
exactly as inductor would (AOTAutograd) without generating kernels, so the
checks are fast; its numerics equal eager's.

The one value check of the step, that every 2x2 block keeps one patch
(``check_uniform_mask``), reads the mask: ``UMMAE.loss`` runs it once, in
eager mode, and skips it while dynamo traces.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

import mmumae  # noqa: F401
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    'swin-t': 'ummae_swin-tiny-w8_8xb512-amp-coslr-200e_in1k-256px.py',
    'pvt-s': 'ummae_pvt-small_8xb512-amp-coslr-200e_in1k-256px.py',
}
#: ``--cfg-options`` of the CPU test: tiny widths and depths
TINY = {
    'swin-t': {
        'model.backbone.arch': dict(_delete_=True, embed_dims=16,
                                    depths=[1, 1, 1, 1],
                                    num_heads=[1, 1, 1, 1]),
        'model.neck.in_channels': 128,
    },
    'pvt-s': {
        'model.backbone.arch': dict(_delete_=True, embed_dims=[8, 8, 8, 16],
                                    depths=[1, 1, 1, 1],
                                    num_heads=[1, 1, 1, 1],
                                    mlp_ratios=[2, 2, 2, 2]),
        'model.neck.in_channels': 16,
    },
}
DECODER = {'model.neck.embed_dims': 32, 'model.neck.num_heads': 2,
           'model.neck.depth': 1}


def _cfg(name: str, size: int = 256) -> Config:
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ummae', CONFIGS[name]))
    cfg.merge_from_dict(dict(TINY[name], **DECODER))
    if size != 256:
        cfg.merge_from_dict({'model.neck.input_size': size})
    return cfg


def _model(cfg: Config):
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def _batch(n: int, size, seed: int = 0):
    np.random.seed(seed)
    gen = UniformMaskGenerator(input_size=size)
    drawn = [gen({}) for _ in range(n)]
    mask = torch.stack([d['mask'] for d in drawn])
    sm = torch.stack([d['sm_mask'] for d in drawn])
    samples = [DataSample(mask=d['mask'], sm_mask=d['sm_mask'])
               for d in drawn]
    hw = (size, size) if isinstance(size, int) else size
    x = torch.randn(n, 3, *hw, generator=torch.Generator().manual_seed(seed))
    return x, mask, sm, samples


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()
            if p.grad is not None}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('name', list(CONFIGS))
def test_loss_is_one_graph_without_breaks(name):
    """``UMMAE.loss`` with its data samples, the entry mmengine's
    ``train_step`` calls: one graph; the mask check is not traced."""
    model = _model(_cfg(name))
    x, _, _, samples = _batch(2, 256)
    explained = torch._dynamo.explain(model.loss)(x, samples)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    assert not model.mask_checked  # skipped while tracing


@pytest.mark.parametrize('size', [256, (224, 160)],
                         ids=['256', '224x160-odd-maps'])
@pytest.mark.parametrize('name', list(CONFIGS))
def test_fullgraph_forward_and_backward_equal_eager(name, size):
    """fullgraph=True compiles forward and backward (AOTAutograd); loss and
    every gradient equal eager mode."""
    cfg = _cfg(name, size)
    model = _model(cfg)
    x, mask, sm, _ = _batch(2, size)
    eager = model.masked_loss(x, mask, sm)
    eager.backward()
    expected = _grads(model)
    model.zero_grad()
    step = torch.compile(model.masked_loss, fullgraph=True,
                         backend='aot_eager')
    loss = step(x, mask, sm)
    loss.backward()
    got = _grads(model)
    assert torch.equal(loss.detach(), eager.detach())
    assert got.keys() == expected.keys() and len(got) > 10
    for key, grad in expected.items():
        torch.testing.assert_close(got[key], grad, rtol=1e-5, atol=1e-7,
                                   msg=key)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_compiled_step_trains_with_the_configs_optimizer(name):
    """The real optimizer step after a compiled forward/backward: the
    config's wrapper (fused AdamW, no decay on norms/tokens; AMP falls back
    to fp32 on a CPU), new masks every step with no recompilation after the
    first, a finite and falling loss."""
    from torch._dynamo.utils import counters
    cfg = _cfg(name)
    # fp32 on the CPU: AmpOptimWrapper needs a GPU
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.pop('loss_scale', None)
    model = _model(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    for group in wrapper.optimizer.param_groups:
        group['lr'] = 2e-3
    step = torch.compile(model.masked_loss, fullgraph=True,
                         backend='aot_eager')
    x = _batch(4, 256)[0]
    losses, graphs = [], []
    for it in range(6):
        _, mask, sm, _ = _batch(4, 256, seed=it % 2)
        loss = step(x, mask, sm)
        wrapper.update_params(loss)
        losses.append(float(loss.detach()))
        graphs.append(counters['stats']['unique_graphs'])
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 1e-3, losses
    assert graphs[1] == graphs[-1], graphs  # no recompile per batch


def test_the_mask_check_runs_once_in_eager_mode():
    """Eager ``UMMAE.loss`` refuses a non-uniform mask on its first batch
    (then it trusts the generator: the check reads values, a GPU sync)."""
    cfg = _cfg('swin-t')
    model = _model(cfg)
    x, mask, sm, samples = _batch(2, 256)
    bad = mask.clone()
    bad[:, :2, :2] = False  # a block keeping all four patches
    samples_bad = [DataSample(mask=m, sm_mask=s) for m, s in zip(bad, sm)]
    with pytest.raises(ValueError, match='not a uniform-sampling mask'):
        model.loss(x, samples_bad)
    assert not model.mask_checked
    model.loss(x, samples)
    assert model.mask_checked
