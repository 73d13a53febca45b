"""Reconstruction figures (tools/visualization/vis_reconstruction.py, its
code in ``mmumae_tools.vis``, and ``mmumae.visualization``): what the saved
PNG shows, read back pixel by pixel.

The panels are found by their black frames. In every row: the US-masked
panel is the original with exactly the removed patches grey (one kept patch
per 2x2 block); the encoder-input panel adds the SM patches in blue; the
reconstruction keeps the visible patches and fills the removed ones.
"""
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from handoff_helpers import data_samples, norm_pix_target, um_masks
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from PIL import Image
from tool_helpers import REPO, load_tool

from mmumae.registry import MODELS
from mmumae.visualization import save_reconstruction_figure
from mmumae.visualization.reconstruction import SM_COLOUR, US_COLOUR

vis_tool = load_tool(
    REPO / 'tools' / 'visualization' / 'vis_reconstruction.py',
    'mmumae_vis_reconstruction')
CONFIG = str(REPO / 'configs' / 'ummae' / 'ummae_swin-mini_demo.py')
GRID = 8  # 128-px demo crops, 16-px mask patches


@pytest.fixture(scope='module')
def demo_model():
    cfg = Config.fromfile(CONFIG)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, demo_model):
    path = str(tmp_path_factory.mktemp('ckpt') / 'demo.pth')
    save_checkpoint(dict(meta=dict(), state_dict=demo_model.state_dict()),
                    path)
    return path


def _runs(flags: np.ndarray) -> List[tuple]:
    """(first, last) of every run of consecutive True indices."""
    idx = np.flatnonzero(flags)
    splits = np.flatnonzero(np.diff(idx) > 1) + 1
    return [(r[0], r[-1]) for r in np.split(idx, splits) if len(r)]


def _spans(runs: List[tuple]) -> List[tuple]:
    """Interiors between consecutive frame lines at least 50 px apart."""
    return [(a[1] + 1, b[0]) for a, b in zip(runs, runs[1:])
            if b[0] - a[1] > 50]


def read_panels(png: str) -> List[List[np.ndarray]]:
    """The image panels of a saved figure, rows x columns, float RGB."""
    img = np.asarray(Image.open(png).convert('RGB')).astype(np.float64)
    dark = img.max(-1) < 60
    # frame lines are dark along all panels of the figure, photo edges not
    cols = _spans(_runs(dark.sum(0) > 0.8 * dark.sum(0).max()))
    rows = _spans(_runs(dark.sum(1) > 0.8 * dark.sum(1).max()))
    return [[img[r0:r1, c0:c1] for c0, c1 in cols] for r0, r1 in rows]


def _centres(panel: np.ndarray) -> np.ndarray:
    """``(GRID, GRID, n, 3)``: the pixels of the central half of every
    patch (away from the blur of the display resampling)."""
    h, w = panel.shape[:2]
    out = []
    for i in range(GRID):
        for j in range(GRID):
            r0, r1 = (4 * i + 1) * h // (4 * GRID), (4 * i + 3) * h // (4 *
                                                                        GRID)
            c0, c1 = (4 * j + 1) * w // (4 * GRID), (4 * j + 3) * w // (4 *
                                                                        GRID)
            out.append(panel[r0:r1, c0:c1].reshape(-1, 3))
    n = min(len(o) for o in out)
    return np.stack([o[:n] for o in out]).reshape(GRID, GRID, n, 3)


def _filled(panel: np.ndarray, colour) -> np.ndarray:
    """``(GRID, GRID)`` bool: patches uniformly of ``colour``."""
    return (np.abs(_centres(panel) - np.array(colour)) <= 3).all((-1, -2))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(GRID, GRID)`` mean absolute difference of two panels' patches."""
    return np.abs(_centres(a) - _centres(b)).mean((-1, -2))


def _write_colour_images(folder: Path, n: int) -> Path:
    """Smooth images far from black, white, grey and the SM blue: red
    180-250, green 20-120, blue 40-120."""
    folder.mkdir()
    yy, xx = np.mgrid[0:160, 0:160]
    for i in range(n):
        img = np.stack([180 + 70 * xx / 160, 20 + 100 * yy / 160,
                        80 + 40 * np.sin(xx / 9. + yy / 13. + i)], -1)
        Image.fromarray(img.astype(np.uint8)).save(folder / f'{i}.png')
    return folder


def _check_uniform_masking(us: np.ndarray, sm: np.ndarray) -> None:
    blocks = us.reshape(GRID // 2, 2, GRID // 2, 2).sum((1, 3))
    assert (blocks == 3).all(), blocks  # one kept patch per 2x2 block
    assert sm.sum() == 4 and not (sm & us).any()  # SM 0.25 of 16 kept


def test_tool_figure_shows_masks_kept_pixels_and_a_reconstruction(
        tmp_path, checkpoint):
    folder = _write_colour_images(tmp_path / 'imgs', 2)
    out = vis_tool.main([CONFIG, checkpoint, '--img-dir', str(folder),
                         '--num', '2', '--out', str(tmp_path / 'a.png')])
    assert Image.open(out).size == (1200, 640)  # 12 x (3 * 2 + 0.4) in
    panels = read_panels(out)
    assert [len(r) for r in panels] == [4, 4]
    for original, us_masked, encoder_input, recon in panels:
        assert original.shape == recon.shape
        us = _filled(us_masked, US_COLOUR)
        sm = _filled(encoder_input, SM_COLOUR)
        _check_uniform_masking(us, sm)
        assert not _filled(original, US_COLOUR).any()
        # visible patches are the original's, in the three other panels
        assert (_diff(us_masked, original)[~us] < 2).all()
        assert (_diff(encoder_input, us_masked)[~sm] < 2).all()
        assert (_diff(recon, original)[~us] < 2).all()
        # removed patches are filled by the (untrained) model: neither
        # grey nor the original
        assert not (_filled(recon, US_COLOUR) & us).any()
        assert (_diff(recon, original)[us] > 5).mean() > 0.9


def test_tool_figure_from_the_training_set(tmp_path, demo_data, checkpoint):
    root = f'train_dataloader.dataset.data_root={demo_data}/imagenet'
    out = vis_tool.main([CONFIG, checkpoint, '--num', '3', '--out',
                         str(tmp_path / 'a.png'), '--cfg-options', root])
    assert Image.open(out).size == (1200, 940)
    panels = read_panels(out)
    assert [len(r) for r in panels] == [4, 4, 4]
    for original, us_masked, encoder_input, recon in panels:
        us = _filled(us_masked, US_COLOUR)
        assert us.sum() >= 48  # photos may hold grey patches of their own
        # (textured photos: panels differ by sub-pixel placement)
        assert (_diff(us_masked, original)[~us] < 8).all()
        assert (_diff(recon, original)[~us] < 8).all()
        assert (_diff(recon, original)[us] > 8).mean() > 0.5


def test_predicting_the_norm_pix_target_reconstructs_the_input(
        tmp_path, demo_model):
    """A model whose decoder predicts exactly the normalised pixels of
    every patch must show the input as its reconstruction: the figure
    undoes norm_pix with each patch's own mean and std."""
    pre = demo_model.data_preprocessor
    mean, std = pre.mean.view(3), pre.std.view(3)
    torch.manual_seed(1)
    pixels = torch.nn.functional.interpolate(  # smooth: crisp panels
        torch.rand(2, 3, 8, 8) * 200 + 20, size=128, mode='bilinear')
    img = (pixels - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    mask, sm = um_masks(2, 128, seed=12)
    target = norm_pix_target(img, 16)
    handle = demo_model.neck.register_forward_hook(
        lambda m, args, out: target)
    try:
        results = demo_model.reconstruct(img, data_samples(mask, sm))
    finally:
        handle.remove()
    torch.testing.assert_close(results['reconstruction'], img, atol=1e-4,
                               rtol=1e-4)
    out = save_reconstruction_figure(results, mean, std,
                                     str(tmp_path / 'fig.png'))
    for n, (original, us_masked, _, recon) in enumerate(read_panels(out)):
        # the original panel shows the input pixels (un-normalised) ...
        shown = _centres(original).mean(2)
        want = _centres(pixels[n].permute(1, 2, 0).numpy()).mean(2)
        assert np.abs(shown - want).max() < 3
        # ... and so does the reconstruction
        assert (_diff(recon, original) < 1).all()
        assert _filled(us_masked, US_COLOUR).sum() == 48


def test_clear_errors(tmp_path, checkpoint):
    with pytest.raises(SystemExit, match='no images'):
        vis_tool.main([CONFIG, checkpoint, '--img-dir', str(tmp_path)])
    # SystemExit or the tools' RunError (a ValueError), naming the path
    with pytest.raises((SystemExit, ValueError), match='x. does not exist'):
        vis_tool.main([CONFIG, checkpoint, '--cfg-options',
                       f'train_dataloader.dataset.data_root={tmp_path}/x'])


def test_mmpretrain_vis_scheduler_runs_on_the_demo_config(tmp_path):
    """mmpretrain's own tools/visualization/vis_scheduler.py builds a Runner
    with the config's custom_hooks around a stand-in model without
    ``reconstruct``: the ReconstructionFigureHook warns once and the lr
    curve is drawn."""
    import mmpretrain
    script = (Path(mmpretrain.__file__).parent / '.mim' / 'tools' /
              'visualization' / 'vis_scheduler.py')
    assert script.is_file(), f'mmpretrain ships no {script}'
    out = tmp_path / 'lr.png'
    proc = subprocess.run(
        [sys.executable, str(script), CONFIG, '--not-show', '--save-path',
         str(out), '--cfg-options', f'work_dir={tmp_path / "work"}'],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, MPLBACKEND='Agg'))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert '20/20 epochs' in log  # the whole schedule was simulated
    assert log.count('has no reconstruct() method') == 1, log[-3000:]
    with Image.open(out) as figure:
        assert figure.size[0] > 500
    # the simulated run wrote no figure of its own
    assert not list(tmp_path.rglob('reconstruction*.png'))
