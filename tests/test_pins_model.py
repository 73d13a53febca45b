"""Model behaviours users depend on, each pinned so that a small bug fails.

- UMPVT's fixed sin-cos table follows the model's dtype and device
  (``.to(torch.bfloat16)``; ``.cuda()`` is the same ``Module._apply`` move,
  exercised here with the ``meta`` device).
- A learnable ``pos_embed`` saved at another image size is resized on
  load by a ``load_state_dict`` pre-hook on the backbone, so ``init_cfg``
  Pretrained, mmengine's ``load_checkpoint`` (the runner's ``load_from``)
  and a plain ``load_state_dict`` adapt it the same way.
- The reference converter puts each decoder norm (all of equal shape) at
  its own place.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import load_checkpoint
from mmpretrain.models.utils import resize_pos_embed
from test_converters import build, official, official_state, save_official

import mmumae  # noqa: F401
from mmumae.models.backbones import UMPVT
from mmumae.models.utils import sincos_2d_colfirst

TINY_PVT = dict(embed_dims=[16, 16, 32, 32], depths=[1, 1, 1, 1],
                num_heads=[1, 1, 2, 2], mlp_ratios=[2, 2, 2, 2])


def _pvt(**kwargs) -> UMPVT:
    torch.manual_seed(0)
    model = UMPVT(arch=TINY_PVT, sr_ratios=(4, 2, 1, 1), **kwargs)
    model.init_weights()
    return model.eval()


# --------------------------------------------- sin-cos table: dtype, device
def test_sincos_table_follows_the_model_dtype():
    """fp32 first, then the same model in bf16: the table is bf16 (not the
    fp32 one cached by the first call), and the bf16 model's output equals
    a model built and run in bf16 from the start."""
    x = torch.randn(1, 3, 64, 64)
    model = _pvt()
    model(x)
    model.to(torch.bfloat16)
    pe = model.position_embedding((16, 16), x.device, torch.bfloat16)
    assert pe.dtype == torch.bfloat16
    assert torch.equal(pe, sincos_2d_colfirst(16, 16, 16).to(torch.bfloat16))
    out = model(x.bfloat16())[0]
    assert out.dtype == torch.bfloat16
    fresh = _pvt().to(torch.bfloat16)
    assert torch.equal(out, fresh(x.bfloat16())[0])
    # and back: fp32 again gives the fp32 table and fp32 numerics
    model.float()
    assert model.position_embedding((16, 16), x.device,
                                    torch.float32).dtype == torch.float32
    same = _pvt().to(torch.bfloat16).float()  # weights rounded alike
    torch.testing.assert_close(model(x)[0], same(x)[0])


@pytest.mark.parametrize('mode', ['dense', 'um'])
def test_sincos_table_follows_the_model_device(mode):
    """A model used on the CPU, then moved (``.to('meta')``: the
    ``Module._apply`` path ``.cuda()`` takes), builds its table on the new
    device; nothing cached for the CPU leaks into the moved model."""
    model = _pvt()
    x = torch.randn(2, 3, 64, 64)
    args = ()
    if mode == 'um':
        from mmumae.datasets.transforms import UniformMaskGenerator
        gen = UniformMaskGenerator(input_size=64)
        drawn = [gen({}) for _ in range(2)]
        args = tuple(torch.stack([d[k] for d in drawn])
                     for k in ('mask', 'sm_mask'))
        from mmumae.models.utils import kept_patch_ids
        kept = kept_patch_ids(args[0])
    model(x, *args)  # fills the CPU cache
    model.to('meta')
    assert all(p.device.type == 'meta' for p in model.parameters())
    pe = model.position_embedding((16, 16), torch.device('meta'),
                                  torch.float32)
    assert pe.device.type == 'meta'
    meta = [a.to('meta') for a in args]
    extra = dict(kept_ids=kept.to('meta')) if mode == 'um' else {}
    out = model(x.to('meta'), *meta, **extra)[0]
    assert out.device.type == 'meta'
    # the CPU entry is still right for a CPU copy of the weights
    assert model.position_embedding((16, 16), torch.device('cpu'),
                                    torch.float32).device.type == 'cpu'


# ---------------------------------------- learnable pos_embed: resize on load
def _saved_at_128(tmp_path, prefix=''):
    src = _pvt(learnable_pos_embed=True, pretrain_img_size=128)
    with torch.no_grad():
        src.pos_embed.normal_()
    state = {prefix + k: v for k, v in src.state_dict().items()}
    path = tmp_path / 'pvt128.pth'
    torch.save(dict(state_dict=state), path)
    expected = resize_pos_embed(src.pos_embed.detach(), (32, 32), (64, 64),
                                'bicubic', 0)
    return str(path), state, expected, src


def test_pos_embed_resized_by_init_cfg(tmp_path):
    path, _, expected, src = _saved_at_128(tmp_path, prefix='backbone.')
    model = UMPVT(arch=TINY_PVT, learnable_pos_embed=True,
                  pretrain_img_size=256,
                  init_cfg=dict(type='Pretrained', checkpoint=path,
                                prefix='backbone.'))
    model.init_weights()
    assert model.pos_embed.shape == (1, 64 * 64, 16)
    torch.testing.assert_close(model.pos_embed.data, expected)
    assert torch.equal(model.mask_token, src.mask_token)


def test_pos_embed_resized_by_load_from_and_load_state_dict(tmp_path):
    """mmengine's ``load_checkpoint`` (what the runner's ``load_from``
    calls) on a whole model (backbone under ``backbone.``) and a plain
    ``load_state_dict``: the same resize."""
    path, state, expected, _ = _saved_at_128(tmp_path, prefix='backbone.')
    whole = torch.nn.Module()
    whole.backbone = UMPVT(arch=TINY_PVT, learnable_pos_embed=True,
                           pretrain_img_size=256)
    load_checkpoint(whole, path, map_location='cpu', strict=True)
    torch.testing.assert_close(whole.backbone.pos_embed.data, expected)

    bare = UMPVT(arch=TINY_PVT, learnable_pos_embed=True,
                 pretrain_img_size=(256, 192))
    bare.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()})
    target = resize_pos_embed(state['backbone.pos_embed'], (32, 32),
                              (64, 48), 'bicubic', 0)
    torch.testing.assert_close(bare.pos_embed.data, target)


def test_fixed_table_model_ignores_a_checkpoint_pos_embed(tmp_path):
    path, state, _, _ = _saved_at_128(tmp_path)
    model = UMPVT(arch=TINY_PVT)
    result = model.load_state_dict(state, strict=True)  # key dropped
    assert not result.missing_keys and not result.unexpected_keys
    assert 'pos_embed' not in dict(model.named_parameters())


# ------------------------------------------ reference converter: decoder norms
@pytest.mark.parametrize('name', ['pretrain_mae_swin_tiny_256',
                                  'pretrain_mae_pvt_small_256'])
def test_converter_puts_each_decoder_norm_in_its_place(tmp_path, name):
    """Every decoder norm has shape (512,): a swap (norm1 <-> norm2, one
    block's norm for another's, or the final decoder_norm) keeps every
    shape. The official block's norm1 precedes attention, as mmpretrain's
    ``ln1``; norm2 the MLP, as ``ln2``."""
    state = official_state(name, seed=3)
    src = save_official(state, tmp_path / 'official.pth')
    dst = tmp_path / 'mmumae.pth'
    official.convert(src, str(dst))
    ckpt = torch.load(dst, weights_only=True)
    converted = ckpt['state_dict']
    norms = [k for k in state if k.startswith(('decoder_blocks.',
                                               'decoder_norm.'))
             and ('.norm1.' in k or '.norm2.' in k
                  or k.startswith('decoder_norm.'))]
    assert len(norms) == 2 * 2 * 2 + 2  # two blocks: norm1, norm2; final
    for key in norms:
        ours = 'neck.' + key.replace('.norm1.', '.ln1.').replace(
            '.norm2.', '.ln2.')
        assert torch.equal(converted[ours], state[key]), (key, ours)
    # the model uses them where their names say: ln1 before attention
    cfg = Config.fromstring(ckpt['meta']['cfg'], file_format='.py')
    model = build(cfg, init_cfg=None)
    model.load_state_dict(converted, strict=False)
    block = model.neck.decoder_blocks[0]
    assert block.norm1 is block.ln1 and block.norm2 is block.ln2
    assert torch.equal(block.ln1.weight.data,
                       state['decoder_blocks.0.norm1.weight'])
