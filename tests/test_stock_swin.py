"""UM-MAE pre-training of the stock Swin architecture.

``UMStockSwinTransformer`` is mmpretrain's ``SwinTransformer`` plus a mask
token and the UM-MAE compact-grid mode. Checked here against the stock
classes themselves: the state dict, the dense outputs, the bias-table index
of the compact grid (read from the stock ``relative_position_index``), a
UM-MAE training step, and a full-size Swin-T checkpoint loading through
mmpretrain's, mmdet's and mmseg's own loaders into their own Swin-T configs,
inherited unchanged apart from ``init_cfg`` (mmdet: ``convert_weights=False``,
which keeps mmdet's own key names).
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import save_checkpoint
from mmpretrain.models.backbones import SwinTransformer
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from tool_helpers import load_tool

import mmumae  # noqa: F401
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.models.backbones import UMStockSwinTransformer
from mmumae.models.utils import kept_patch_ids, to_windows

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools' / 'model_converters'
to_backbone = load_tool(TOOLS / 'ummae_to_backbone.py', 'ummae_to_backbone')
PAPER = REPO / ('configs/ummae/ummae_stock-swin-tiny-w8_8xb512-amp-coslr-'
                '200e_in1k-256px.py')
DEMO = REPO / 'configs/ummae/ummae_stock-swin-mini_demo.py'
SMALL = dict(embed_dims=16, depths=[1, 2, 2, 1], num_heads=[1, 2, 2, 4])

#: The stock Swin-T configs of the three libraries, and what their loader
#: needs in init_cfg (mmdet's keeps only keys starting with 'backbone.',
#: and with convert_weights=True would rename them from the official
#: Swin layout first).
STOCK = {
    'mmpretrain': ('mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
                   "init_cfg=dict(type='Pretrained', checkpoint='{ckpt}', "
                   "prefix='backbone.')"),
    'mmdet': ('mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
              "convert_weights=False, init_cfg=dict(type='Pretrained', "
              "checkpoint='{ckpt}')"),
    'mmseg': ('mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_'
              '8xb2-160k_ade20k-512x512.py',
              "init_cfg=dict(type='Pretrained', checkpoint='{ckpt}')"),
}


def masks(n: int, size: int, seed: int = 0):
    np.random.seed(seed)
    gen = UniformMaskGenerator(input_size=size)
    res = [gen(dict()) for _ in range(n)]
    return (torch.as_tensor(np.stack([r['mask'] for r in res])).bool(),
            torch.as_tensor(np.stack([r['sm_mask'] for r in res])).bool())


def randomise(model: torch.nn.Module, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(0.05 * torch.randn(v.shape, generator=gen))


def stock_index(window: int, offset: torch.Tensor) -> torch.Tensor:
    """Index into a stock table of ``window`` for (row, col) offsets
    ``query - key``, read off the stock class's own index buffer."""
    msa = SwinTransformer(arch=dict(SMALL, depths=[1, 1, 1, 1]),
                          window_size=window, img_size=window * 4 * 8)
    buf = msa.stages[0].blocks[0].attn.w_msa.relative_position_index
    r, c = torch.meshgrid(torch.arange(window), torch.arange(window),
                          indexing='ij')
    pos = torch.stack([r.flatten(), c.flatten()], -1)
    d = pos[:, None] - pos[None]  # [q, k] -> q - k
    lut = torch.full((2 * window - 1, 2 * window - 1), -1, dtype=torch.long)
    lut[d[..., 0] + window - 1, d[..., 1] + window - 1] = buf
    assert (lut >= 0).all()
    return lut[offset[..., 0] + window - 1, offset[..., 1] + window - 1]


# -------------------------------------------------------- state dict, dense
@pytest.mark.parametrize('kwargs', [
    dict(img_size=224, window_size=7),
    dict(img_size=256, window_size=16, pad_small_map=True),
    dict(img_size=256, window_size=16, stage_cfgs=[
        dict(block_cfgs=dict(window_size=w)) for w in (16, 16, 16, 8)]),
], ids=['w7-224', 'w16-pad', 'w16-8-stages'])
def test_dense_is_stock(kwargs):
    """Same keys and shapes as SwinTransformer (plus mask_token); the stock
    class loads the weights strictly and computes the same outputs."""
    torch.manual_seed(0)
    ours = UMStockSwinTransformer(arch=SMALL, out_indices=(0, 1, 2, 3),
                                  **kwargs)
    randomise(ours)
    stock = SwinTransformer(arch=SMALL, out_indices=(0, 1, 2, 3), **kwargs)
    ours.eval()  # (SwinTransformer.train returns None: no chaining)
    stock.eval()
    state = ours.state_dict()
    assert list(state) == ['mask_token'] + list(stock.state_dict())
    del state['mask_token']
    stock.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, kwargs['img_size'], kwargs['img_size'])
    with torch.no_grad():
        for a, b in zip(ours(x), stock(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- UM mode
def test_compact_coordinates_and_table_index():
    """Every compact token carries its original coordinate, and every
    attending pair reads the stock table at the pair's original offset."""
    model = UMStockSwinTransformer(arch=SMALL, img_size=128, window_size=16,
                                   um_window_size=8)
    mask, sm = masks(3, 128, seed=3)
    x = torch.randn(3, 3, 128, 128)
    coords = model.compact_input(x, mask, sm).coords
    per_stage = model.stage_coordinates(coords)
    assert [tuple(c.shape[1:3]) for c in per_stage] == [(16, 16), (8, 8),
                                                        (4, 4), (2, 2)]
    # stage 2 has one token per 16-px patch: its coordinate is the kept
    # patch's place on the 8x8 mask grid
    ids = kept_patch_ids(mask)
    patch = torch.stack([ids // 8, ids % 8], -1).view(3, 4, 4, 2)
    assert torch.equal(per_stage[2], patch)
    assert torch.equal(per_stage[0][:, ::4, ::4], patch * 4)
    for i, crd in enumerate(per_stage):
        for shifted in (False, True):
            geo = model.compact_geometry(crd, 16, shifted, i)
            cw = to_windows(crd, geo)  # (B, nW, N, 2)
            offset = cw[:, :, :, None] - cw[:, :, None, :]  # q - k
            attends = torch.ones(offset.shape[:4], dtype=torch.bool)
            if geo.attn_mask is not None:
                attends = (geo.attn_mask[:, :, 0] == 0).expand_as(attends)
            assert offset[attends].abs().max() <= 15  # inside the table
            ok = offset.abs().amax(-1) <= 15
            want = stock_index(16, offset.clamp(-15, 15))
            assert torch.equal(geo.rel_index[attends & ok],
                               want[attends & ok]), (i, shifted)
        if i == 0:  # two patch-aligned windows: offsets reach 15
            assert offset[attends].abs().max() == 15
    # the paper geometry: 8-token compact windows need a 16-token table
    mask, sm = masks(1, 256)
    small_table = UMStockSwinTransformer(arch=SMALL, window_size=8,
                                         um_window_size=8)
    with pytest.raises(ValueError, match='set window_size >= 16'):
        small_table(torch.randn(1, 3, 256, 256), mask, sm)
    # a window (or shift) cutting mask patches would span more
    cutting = UMStockSwinTransformer(arch=dict(SMALL, depths=[2, 1, 1, 1]),
                                     window_size=16, um_window_size=4)
    with pytest.raises(ValueError, match='multiple of 8'):
        cutting(torch.randn(1, 3, 256, 256), mask, sm)


def test_um_mode_refusals():
    model = UMStockSwinTransformer(arch=SMALL, img_size=128)
    mask, sm = masks(1, 128)
    with pytest.raises(ValueError, match='needs both mask and sm_mask'):
        model(torch.randn(1, 3, 128, 128), mask)
    with pytest.raises(ValueError, match='implies 12-px mask patches'):
        model(torch.randn(1, 3, 96, 96), mask, sm)
    with pytest.raises(ValueError, match='does not match the 8x8 mask grid'):
        model(torch.randn(1, 3, 128, 96), mask, sm)
    with pytest.raises(ValueError, match='use_abs_pos_embed=True'):
        UMStockSwinTransformer(arch=SMALL, use_abs_pos_embed=True)


def test_sm_tokens_are_the_mask_token_before_the_patch_norm():
    """Secondary-masked tokens are replaced by ``mask_token`` right after
    the patch projection, before the patch-embedding norm (as the
    reference does): the norm sees the mask token there and the projected
    patch everywhere else."""
    model = UMStockSwinTransformer(arch=SMALL, img_size=128)
    model.eval()  # mmpretrain's Swin.train() returns None
    randomise(model)
    with torch.no_grad():
        model.mask_token.normal_()
    seen = {}
    model.patch_embed.norm.register_forward_hook(
        lambda m, args, out: seen.setdefault('x', args[0].detach()))
    mask, sm = masks(2, 128)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        model(x, mask, sm)
        c = model.compact_input(x, mask, sm)
        proj = model.patch_embed.projection(c.image).permute(0, 2, 3, 1)
    inp, sm_tok = seen['x'], c.sm_tokens
    assert inp.shape == proj.shape and sm_tok.any() and (~sm_tok).any()
    torch.testing.assert_close(
        inp[sm_tok], model.mask_token.reshape(1, -1).expand(
            int(sm_tok.sum()), -1))
    torch.testing.assert_close(inp[~sm_tok], proj[~sm_tok])


def test_um_training_step_loss_falls():
    """The demo config's UMMAE on a fixed batch: the loss falls over a few
    AdamW steps and every part of the stock Swin gets a gradient."""
    torch.manual_seed(0)
    cfg = Config.fromfile(str(DEMO))
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.backbone) is UMStockSwinTransformer
    mask, sm = masks(4, 128, seed=1)
    samples = []
    for m, s in zip(mask, sm):
        ds = DataSample()
        ds.set_field(m.numpy(), 'mask')
        ds.set_field(s.numpy(), 'sm_mask')
        samples.append(ds)
    yy, xx = torch.meshgrid(torch.arange(128.), torch.arange(128.),
                            indexing='ij')
    inputs = torch.stack([
        torch.stack([torch.sin(xx / (7 + i) + c) * torch.cos(yy / (5 + c))
                     for c in range(3)]) for i in range(4)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(6):
        loss = model.loss(inputs, samples)['loss']
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grads = {n: p.grad for n, p in model.backbone.named_parameters()}
            assert all(g is not None and g.abs().sum() > 0
                       for g in grads.values()), [
                           n for n, g in grads.items()
                           if g is None or g.abs().sum() == 0]
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# ------------------------------------------------- stock configs, full size
@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A Swin-T backbone of the paper config, moved off its init, saved
    as the Runner saves a pre-training checkpoint (its config in meta)."""
    cfg = Config.fromfile(str(PAPER))
    backbone = MODELS.build(cfg.model.backbone)
    randomise(backbone)
    state = {'backbone.' + k: v for k, v in backbone.state_dict().items()}
    path = tmp_path_factory.mktemp('stock') / 'pre.pth'
    save_checkpoint(dict(meta=dict(cfg=cfg.pretty_text), state_dict=state),
                    str(path))
    return str(path), state


@pytest.mark.parametrize('scope', list(STOCK))
def test_loads_into_stock_swin_t_config(pretrained, tmp_path, scope):
    src, state = pretrained
    stock_cfg, init = STOCK[scope]
    out = str(tmp_path / f'{scope}.pth')
    to_backbone.convert(src, out, stock_config=stock_cfg)

    cfg_file = tmp_path / f'{scope}_cfg.py'
    cfg_file.write_text(f"_base_ = ['{stock_cfg}']\n"
                        f"model = dict(backbone=dict({init.format(ckpt=out)}"
                        f"))\n")
    cfg = Config.fromfile(str(cfg_file))
    from importlib import import_module
    import_module(f'{scope}.utils').register_all_modules(
        init_default_scope=False)
    registry = import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    backbone = model.backbone
    assert type(backbone).__module__.startswith(scope)  # the stock class
    assert type(backbone).__name__ == 'SwinTransformer'

    reports = []
    backbone.register_load_state_dict_post_hook(
        lambda module, keys: reports.append(
            (list(keys.missing_keys), list(keys.unexpected_keys))))
    backbone.init_weights()  # the library's own loading path
    assert reports == [([], [])]  # loaded once: nothing missing/unexpected

    saved = torch.load(out, weights_only=True)['state_dict']
    own = backbone.state_dict()
    assert sorted(saved) == sorted('backbone.' + k for k in own)
    for k, v in own.items():
        assert torch.equal(v, saved['backbone.' + k]), k
        src_v = state.get('backbone.' + k)
        if 'relative_position' not in k and src_v is not None:
            assert torch.equal(v, src_v), k  # pre-trained, unchanged
    # window 7: each table is the centre of the pre-trained window-16 one,
    # i.e. the same bias for every offset the window-7 model has
    d = torch.stack(torch.meshgrid(torch.arange(-6, 7), torch.arange(-6, 7),
                                   indexing='ij'), -1)
    key = 'stages.2.blocks.3.attn.w_msa.relative_position_bias_table'
    torch.testing.assert_close(
        own[key][stock_index(7, d)],
        state['backbone.' + key][stock_index(16, d)], rtol=0, atol=0)
    norms = {k for k in own if k.startswith('norm')}
    assert norms == ({'norm3.weight', 'norm3.bias'} if scope == 'mmpretrain'
                     else {f'norm{i}.{p}' for i in range(4)
                           for p in ('weight', 'bias')})
