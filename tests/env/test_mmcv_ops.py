"""Environment check: mmcv's compiled ops on the CPU, against values worked
out by hand (the installed stack, not mmumae's code)."""
import pytest
import torch
from mmcv.ops import RoIAlign, batched_nms, nms

pytestmark = pytest.mark.env


def _ramp(height=8, width=8):
    """A (1, 1, H, W) image whose pixel (y, x) holds x + 10 * y.

    Bilinear interpolation reproduces a linear function exactly, so each
    RoIAlign bin (the mean of its sampling points, placed symmetrically in
    the bin) equals the ramp at the bin centre.
    """
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width),
                            indexing='ij')
    return (xs + 10 * ys).float()[None, None]


def test_roi_align_aligned_ramp():
    # RoI x 1..5, y 2..6 -> 2x2 bins of 2x2 px. aligned=True shifts by
    # -0.5 px (pixel i covers [i, i+1)): bin centres at x = 1.5, 3.5 and
    # y = 2.5, 4.5 in pixel-index units -> x + 10y.
    rois = torch.tensor([[0., 1., 2., 5., 6.]])
    op = RoIAlign((2, 2), spatial_scale=1., sampling_ratio=2, aligned=True)
    out = op(_ramp(), rois)
    expected = torch.tensor([[26.5, 28.5], [46.5, 48.5]])
    torch.testing.assert_close(out[0, 0], expected)


def test_roi_align_unaligned_and_scaled():
    # aligned=False: no half-pixel shift, centres at x = 2, 4 and y = 3, 5.
    out = RoIAlign((2, 2), 1., 2, aligned=False)(_ramp(), torch.tensor(
        [[0., 1., 2., 5., 6.]]))
    torch.testing.assert_close(out[0, 0],
                               torch.tensor([[32., 34.], [52., 54.]]))
    # spatial_scale=0.5: an RoI given at twice the map's resolution.
    out = RoIAlign((2, 2), 0.5, 2, aligned=True)(_ramp(), torch.tensor(
        [[0., 2., 4., 10., 12.]]))
    torch.testing.assert_close(out[0, 0],
                               torch.tensor([[26.5, 28.5], [46.5, 48.5]]))


def test_roi_align_batch_index_and_backward():
    # The RoI's first column picks the image: image 1 is image 0 + 100.
    feats = torch.cat([_ramp(), _ramp() + 100]).requires_grad_()
    rois = torch.tensor([[1., 1., 2., 5., 6.]])
    out = RoIAlign((2, 2), 1., 2, aligned=True)(feats, rois)
    torch.testing.assert_close(
        out[0, 0], torch.tensor([[126.5, 128.5], [146.5, 148.5]]))
    # Each output is a weighted mean (weights sum to 1, all samples inside
    # the image): the gradient of the sum is 4 in total, all on image 1.
    out.sum().backward()
    assert feats.grad[0].abs().sum() == 0
    assert feats.grad[1].sum().item() == pytest.approx(4.0)


def _boxes():
    # IoUs with box 0 (area 100): box 1 90/110 = 0.82, box 2 80/120 = 0.67,
    # box 3 50/100 = 0.5, box 4 0. Box 1 vs box 2: 90/110 = 0.82.
    boxes = torch.tensor([[0., 0., 10., 10.],
                          [1., 0., 11., 10.],
                          [2., 0., 12., 10.],
                          [0., 0., 10., 5.],
                          [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.75, 0.7, 0.6])
    return boxes, scores


@pytest.mark.parametrize('iou_threshold, kept', [
    (0.85, [0, 1, 2, 3, 4]),  # no pair overlaps that much
    # 1 goes (0.82 with 0). 2 stays: it is 0.82 from 1, but 1 was already
    # suppressed, and only 0.67 from 0.
    (0.7, [0, 2, 3, 4]),
    (0.6, [0, 3, 4]),       # 0 suppresses 1 and 2
    (0.45, [0, 4]),         # ... and 3 (0.5)
])
def test_nms_known_overlaps(iou_threshold, kept):
    boxes, scores = _boxes()
    # Shuffled input: nms sorts by score itself and returns input indices.
    perm = torch.tensor([3, 0, 4, 2, 1])
    dets, inds = nms(boxes[perm], scores[perm], iou_threshold)
    assert perm[inds].tolist() == kept
    torch.testing.assert_close(dets[:, :4], boxes[kept])
    torch.testing.assert_close(dets[:, 4], scores[kept])


def test_batched_nms_keeps_classes_apart():
    boxes, scores = _boxes()
    labels = torch.tensor([0, 1, 0, 0, 0])  # box 1 is another class
    dets, keep = batched_nms(boxes, scores, labels,
                             dict(type='nms', iou_threshold=0.6))
    assert keep.tolist() == [0, 1, 3, 4]
    torch.testing.assert_close(dets[:, 4], scores[[0, 1, 3, 4]])
