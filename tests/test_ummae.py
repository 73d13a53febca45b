"""UM-MAE algorithm, decoder, checkpoints, demo configs and SimMIM."""
import os
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner, save_checkpoint
from mmpretrain.structures import DataSample

import mmumae  # noqa: F401
from mmumae.datasets.transforms import UniformMaskGenerator
from mmumae.models.utils import kept_patch_ids
from mmumae.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_SWIN = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4])


def _tiny_ummae(size=64, pos_order='original', backbone=None):
    backbone = backbone or dict(
        type='UMSwinTransformer', arch=TINY_SWIN, window_size=4)
    model = MODELS.build(
        dict(
            type='UMMAE',
            backbone=backbone,
            neck=dict(
                type='UMMAEPretrainDecoder',
                in_channels=128 if 'embed_dims' in str(backbone) and
                backbone['type'] == 'UMSwinTransformer' else 64,
                embed_dims=32,
                depth=1,
                num_heads=2,
                input_size=size,
                pos_order=pos_order),
            head=dict(
                type='MAEPretrainHead',
                norm_pix=True,
                patch_size=16,
                loss=dict(type='PixelReconstructionLoss', criterion='L2'))))
    model.init_weights()
    return model


def _samples(n, size=64, seed=0):
    np.random.seed(seed)
    gen = UniformMaskGenerator(input_size=size)
    out = []
    for _ in range(n):
        res = gen(dict())
        ds = DataSample()
        ds.set_field(res['mask'], 'mask')
        ds.set_field(res['sm_mask'], 'sm_mask')
        out.append(ds)
    return out


def test_loss_sees_only_the_us_removed_patches():
    torch.manual_seed(0)
    model = _tiny_ummae(size=128)
    samples = _samples(2, size=128)
    captured = {}

    def keep(module, args, output):
        output.retain_grad()
        captured['pred'] = output

    model.neck.register_forward_hook(keep)
    model.loss(torch.randn(2, 3, 128, 128), samples)['loss'].backward()
    grad = captured['pred'].grad.abs().sum(-1)  # (B, 64) per patch
    mask = torch.stack([s.mask for s in samples]).flatten(1)
    sm = torch.stack([s.sm_mask for s in samples]).flatten(1)
    assert (grad[mask] > 0).all()  # every removed patch is a target
    assert (grad[~mask] == 0).all()  # visible patches never are ...
    assert sm.any() and (grad[sm] == 0).all()  # ... nor the SM ones


def test_changing_visible_or_sm_predictions_leaves_the_loss_unchanged():
    head = _tiny_ummae().head
    samples = _samples(1, size=64)
    mask = samples[0].mask.flatten()[None].float()
    sm = samples[0].sm_mask.flatten()
    img = torch.randn(1, 3, 64, 64)
    pred = torch.randn(1, 16, 768)
    base = head.loss(pred, img, mask)
    changed = pred.clone()
    changed[0, ~mask[0].bool()] += 5.0  # visible, SM included
    assert sm.any()
    torch.testing.assert_close(head.loss(changed, img, mask), base)
    changed = pred.clone()
    changed[0, mask[0].bool().nonzero()[0]] += 5.0
    assert not torch.allclose(head.loss(changed, img, mask), base)


def test_decoder_position_orders():
    samples = _samples(8, size=256, seed=3)
    mask = torch.stack([s.mask for s in samples])
    kept = kept_patch_ids(mask)
    original_dec = _tiny_ummae(size=256).neck
    ref_dec = _tiny_ummae(size=256, pos_order='reference').neck
    # original order: visible token k gets the embedding of its own patch
    assert torch.equal(original_dec.visible_position_ids(kept), kept)
    ref = ref_dec.visible_position_ids(kept)
    assert torch.equal(ref, torch.sort(kept, 1).values)  # raster order
    wrong = (ref != kept).sum(1)
    # the reference flaw: most visible tokens get another patch's position
    assert (wrong > 32).all(), wrong
    with pytest.raises(ValueError, match='pos_order'):
        MODELS.build(dict(type='UMMAEPretrainDecoder', pos_order='raster'))


def test_both_orders_train_and_decoder_checks_size():
    for order in ('original', 'reference'):
        torch.manual_seed(0)
        model = _tiny_ummae(pos_order=order)
        loss = model.loss(torch.randn(2, 3, 64, 64), _samples(2))['loss']
        assert torch.isfinite(loss)
    model = _tiny_ummae(size=64)
    with pytest.raises(ValueError, match='set input_size to the image size'):
        model.loss(torch.randn(2, 3, 128, 128), _samples(2, size=128))


def test_reconstruct_keeps_visible_pixels_and_fills_removed_ones(tmp_path):
    from mmumae.visualization import save_reconstruction_figure
    model = _tiny_ummae(size=128)
    samples = _samples(2, size=128)
    img = torch.randn(2, 3, 128, 128)
    out = model.reconstruct(img, samples)
    us = out['mask'].bool().expand_as(img)
    assert torch.equal(out['reconstruction'][~us], img[~us])
    assert not torch.allclose(out['reconstruction'][us], img[us])
    assert (out['us_masked'][us] == 0).all()
    assert (out['encoder_input'][out['sm_mask'].bool().expand_as(img)] ==
            0).all()
    path = save_reconstruction_figure(out, torch.full((3, ), 127.),
                                      torch.full((3, ), 50.),
                                      str(tmp_path / 'fig.png'))
    assert osp.getsize(path) > 10000


@pytest.mark.parametrize('family', ['swin', 'pvt'])
def test_pretrain_checkpoint_loads_into_dense_backbones(tmp_path, family):
    if family == 'swin':
        pre_bb = dict(type='UMSwinTransformer', arch=TINY_SWIN, window_size=4)
        dense_bb = dict(
            type='UMSwinTransformer', arch=TINY_SWIN, window_size=8,
            out_indices=(3, ))
    else:
        arch = dict(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                    num_heads=[1, 2, 2, 4], mlp_ratios=[2, 2, 2, 2])
        pre_bb = dict(type='UMPVT', arch=arch, sr_ratios=(4, 2, 1, 1))
        dense_bb = dict(type='UMPVT', arch=arch, sr_ratios=(8, 4, 2, 1))
    model = _tiny_ummae(size=64, backbone=pre_bb)
    model.loss(torch.randn(2, 3, 64, 64), _samples(2))['loss'].backward()
    ckpt = str(tmp_path / 'pre.pth')
    save_checkpoint(dict(meta=dict(), state_dict=model.state_dict()), ckpt)
    state = torch.load(ckpt, weights_only=True)['state_dict']
    backbone_keys = {k[len('backbone.'):] for k in state
                     if k.startswith('backbone.')}
    left = {k.split('.')[0] for k in state if not k.startswith('backbone.')}
    assert left == {'neck'}  # only decoder keys are left over

    for scope in ('mmpretrain', 'mmdet', 'mmseg'):
        import importlib

        from mmengine.registry import DefaultScope
        registry = importlib.import_module(f'{scope}.registry').MODELS
        # mmdet/mmseg configs name the backbone across scopes
        name = dense_bb['type'] if scope == 'mmpretrain' \
            else f'mmpretrain.{dense_bb["type"]}'
        cfg = dict(
            dense_bb, type=name,
            init_cfg=dict(type='Pretrained', checkpoint=ckpt,
                          prefix='backbone.'))
        with DefaultScope.overwrite_default_scope(scope):
            dense = registry.build(cfg)
        assert set(dense.state_dict()) == backbone_keys  # same names
        dense.init_weights()
        for k, v in dense.state_dict().items():
            torch.testing.assert_close(v, state['backbone.' + k])
        feats = dense(torch.randn(1, 3, 96, 64))
        assert feats[-1].shape[-2:] == (3, 2)


def test_checkpoints_that_do_not_fit_fail_clearly(tmp_path):
    model = _tiny_ummae()
    ckpt = str(tmp_path / 'pre.pth')
    save_checkpoint(dict(meta=dict(), state_dict=model.state_dict()), ckpt)

    def dense(arch=TINY_SWIN, **init):
        bb = MODELS.build(
            dict(type='UMSwinTransformer', arch=arch, out_indices=(0, 3),
                 init_cfg=dict(type='Pretrained', checkpoint=ckpt, **init)))
        bb.init_weights()
        return bb

    with pytest.raises(ValueError, match="set init_cfg.prefix='backbone.'"):
        dense()  # whole-model checkpoint, no prefix
    with pytest.raises(KeyError, match="prefix 'encoder.'"):
        dense(prefix='encoder.')
    wider = dict(TINY_SWIN, embed_dims=32)
    with pytest.raises(ValueError, match=r'another shape .*\[1, 1, 1, 16\] '
                       r'in the checkpoint vs \[1, 1, 1, 32\] in the model'
                       r'.*check that arch'):
        dense(arch=wider, prefix='backbone.')
    deeper = dict(TINY_SWIN, depths=[1, 1, 2, 1])
    with pytest.raises(ValueError, match='missing.*stages.2.blocks.1'):
        dense(arch=deeper, prefix='backbone.')
    # fits: only the new output norm (stage 0) keeps its default init
    bb = dense(prefix='backbone')
    torch.testing.assert_close(bb.patch_embed.weight,
                               model.backbone.patch_embed.weight)
    assert torch.equal(bb.norm0.weight, torch.ones(16))


class _LossRecorder(Hook):

    def __init__(self):
        self.losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss']))


@pytest.mark.parametrize('config', [
    'configs/ummae/ummae_swin-mini_demo.py',
    'configs/ummae/ummae_pvt-mini_demo.py',
    'configs/simmim/simmim_swin-mini_demo.py',
    'configs/simmim/simmim_pvt-mini_demo.py',
])
def test_demo_configs_lower_the_loss(tmp_path, demo_data, config):
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.data_root = str(demo_data / 'imagenet')
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=24)
    cfg.param_scheduler = []
    cfg.optim_wrapper = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=1.5e-3, betas=(0.9, 0.95)))
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=24, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=8)
    cfg.log_processor = dict(window_size=8, by_epoch=False)
    cfg.randomness = dict(seed=0)
    cfg.custom_hooks = [
        dict(h, interval=12) for h in cfg.get('custom_hooks', [])
        if h['type'] == 'ReconstructionFigureHook'
    ]
    runner = Runner.from_cfg(cfg)
    recorder = _LossRecorder()
    runner.register_hook(recorder)
    runner.train()
    first, last = np.mean(recorder.losses[:6]), np.mean(recorder.losses[-6:])
    assert last < 0.9 * first, recorder.losses
    assert osp.exists(osp.join(runner.work_dir, 'iter_24.pth'))
    if 'ummae' in config:  # the hook's interval counts iterations here
        figures = sorted(f for f in os.listdir(runner.work_dir)
                         if f.startswith('reconstruction'))
        assert figures == ['reconstruction.png', 'reconstruction_iter_12.png',
                           'reconstruction_iter_24.png']


def test_um_on_plain_vit_trains_and_checks_patch_size():
    torch.manual_seed(0)
    vit = dict(type='UMVisionTransformer', img_size=64, patch_size=16,
               arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                         feedforward_channels=64))
    model = MODELS.build(
        dict(
            type='UMMAE',
            backbone=vit,
            neck=dict(type='UMMAEPretrainDecoder', in_channels=32,
                      embed_dims=32, depth=1, num_heads=2, upscale=1,
                      input_size=64),
            head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=16,
                      loss=dict(type='PixelReconstructionLoss',
                                criterion='L2'))))
    model.init_weights()
    samples = _samples(2)
    img = torch.nn.functional.interpolate(  # smooth, so it can be learned
        torch.randn(2, 3, 4, 4), size=64, mode='bilinear')
    feats = model.backbone(img, torch.stack([s.mask for s in samples]),
                           torch.stack([s.sm_mask for s in samples]))
    assert feats[0].shape == (2, 32, 2, 2)  # 4 kept of 16 patches
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.loss(img, samples)['loss']
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    with pytest.raises(ValueError, match='mask_patch_size=16'):
        model.backbone(
            img, torch.zeros(2, 8, 8, dtype=torch.bool),
            torch.zeros(2, 8, 8, dtype=torch.bool))


DEMO_CONFIGS = sorted(
    str(p.relative_to(REPO)) for p in Path(REPO, 'configs/ummae').glob(
        '*_demo.py'))


@pytest.mark.parametrize('config', DEMO_CONFIGS)
def test_demo_config_refuses_a_decoder_that_does_not_fit(config):
    """Every UM demo config (the stock-Swin one included) builds, and with
    ``model.neck.in_channels=999`` is refused at build by one line that
    names the backbone's channels and the setting to change."""
    cfg = Config.fromfile(osp.join(REPO, config))
    model = MODELS.build(cfg.model)
    channels = model.backbone.out_channels
    cfg.merge_from_dict({'model.neck.in_channels': 999})
    with pytest.raises(ValueError) as err:
        MODELS.build(cfg.model)
    message = str(err.value)
    assert '\n' not in message
    assert f'has {channels} channels' in message
    assert f'set model.neck.in_channels={channels}.' in message


@pytest.mark.parametrize('cfg,new', [
    (dict(type='UMMAEViT'), "set type='UMVisionTransformer'"),
    (dict(type='UMVisionTransformer', mask_ratio=0.75), 'delete it'),
    (dict(type='UMMAEPretrainDecoder', patch_size=16), "'mask_patch_size'"),
    (dict(type='UMMAEPretrainDecoder', in_chans=3), "'img_channels'"),
    (dict(type='UMMAEPretrainDecoder', pos_order='true'), "'original'"),
    (dict(type='UMMAEPretrainHead', patch_size=16,
          loss=dict(type='PixelReconstructionLoss')), "'mask_patch_size'"),
    (dict(type='UMMAEPretrainHead', in_channels=3,
          loss=dict(type='PixelReconstructionLoss')), "'img_channels'"),
])
def test_old_argument_names_fail_with_their_new_name(cfg, new):
    """A config written for the names before the rename fails at build
    with one line that names the replacement."""
    with pytest.raises((TypeError, ValueError)) as err:
        MODELS.build(cfg)
    assert new in str(err.value) and '\n' not in str(err.value)
