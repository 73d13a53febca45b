"""The OpenMMLab inferencers on a checkpoint of each shipped demo config.

mmpretrain's ``ImageClassificationInferencer`` and ``FeatureExtractor`` on
``configs/finetune/*demo*``, mmdet's ``DetInferencer`` on the Mask R-CNN
demo and mmseg's ``MMSegInferencer`` on the UperNet demo, each given the
config file and a checkpoint the test writes as a runner would
(``state_dict`` + ``meta.dataset_meta``) from the config's own model with
its weights moved off their initial values. Every inferencer must load that
checkpoint (its model's state equals the file's) and predict on a demo
image with the config's test pipeline and collate function.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import save_checkpoint
from PIL import Image

import mmumae  # noqa: F401  (registers the backbones everywhere)

# numpy 2 and the libraries' own deprecations, not ours to fix
pytestmark = [
    pytest.mark.filterwarnings(
        'ignore:__array__ implementation:DeprecationWarning'),
    pytest.mark.filterwarnings('ignore:.*`num_anchors` is deprecated'),
    pytest.mark.filterwarnings('ignore:``build_loss`` would be deprecated'),
    pytest.mark.filterwarnings('ignore:Default ``avg_non_ignore`` is False'),
    pytest.mark.filterwarnings(
        'ignore:`reduce_zero_label` will be deprecated'),
    pytest.mark.filterwarnings('ignore:Failed to add'),
    pytest.mark.filterwarnings('ignore:__array_wrap__ must accept'),
    # random weights: boxes beyond the image, drawn clipped
    pytest.mark.filterwarnings('ignore:Warning. The (bbox|polygon) is out'),
]

REPO = Path(__file__).resolve().parents[1]
FINETUNE_DEMOS = sorted((REPO / 'configs' / 'finetune').glob('*demo*.py'))
DET_DEMO = REPO / 'configs' / 'mmdet' / 'mask-rcnn_swin-mini_demo.py'
SEG_DEMO = REPO / 'configs' / 'mmseg' / 'upernet_swin-mini_demo.py'


def _checkpoint(config: Path, out: Path, dataset_meta: dict) -> dict:
    """Build ``config``'s model in its scope, move every weight off its
    initial value, save it as a runner would; returns the saved state."""
    from mmengine.registry import MODELS
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None  # nothing to read from work_dirs/
    if 'data_preprocessor' in cfg:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_checkpoint(
        dict(meta=dict(dataset_meta=dataset_meta), state_dict=state),
        str(out))
    return state


def _assert_loaded(model: torch.nn.Module, state: dict) -> None:
    """The inferencer's model holds exactly the checkpoint's tensors."""
    have = model.state_dict()
    assert sorted(have) == sorted(state)
    differ = [k for k, v in state.items()
              if not torch.equal(have[k].cpu(), v)]
    assert not differ, f'{len(differ)} tensors not loaded, e.g. {differ[:3]}'


def _image(folder: Path) -> str:
    return str(sorted(p for p in folder.rglob('*')
                      if p.suffix.lower() in ('.jpg', '.jpeg'))[0])


@pytest.mark.parametrize('config', FINETUNE_DEMOS, ids=lambda p: p.stem)
def test_mmpretrain_inferencers_on_finetune_demo(config, tmp_path,
                                                 demo_data):
    from mmpretrain.apis import FeatureExtractor, ImageClassificationInferencer
    cfg = Config.fromfile(str(config))
    classes = list(cfg.demo_classes)
    ckpt = tmp_path / 'classifier.pth'
    state = _checkpoint(config, ckpt, dict(classes=classes))
    img = _image(demo_data / 'imagenet' / 'val')

    inferencer = ImageClassificationInferencer(
        str(config), pretrained=str(ckpt), device='cpu')
    _assert_loaded(inferencer.model, state)
    result = inferencer(img)[0]
    scores = np.asarray(result['pred_scores'])
    assert scores.shape == (len(classes), )
    assert abs(scores.sum() - 1) < 1e-4
    assert result['pred_label'] == int(scores.argmax())
    assert result['pred_class'] == classes[result['pred_label']]

    extractor = FeatureExtractor(str(config), pretrained=str(ckpt),
                                 device='cpu')
    _assert_loaded(extractor.model, state)
    feats = extractor(img, stage='backbone')[0]
    # the last stage at 128 px: 4x4 map for Swin and PVT (stride 32)
    width = inferencer.model.head.in_channels
    assert [tuple(f.shape) for f in feats] == [(width, 4, 4)]
    pooled = extractor(img)[0]  # after the neck (global average pooling)
    assert tuple(pooled[0].shape) == (width, )
    torch.testing.assert_close(pooled[0], feats[0].mean(dim=(1, 2)))


def test_det_inferencer_on_mask_rcnn_demo(tmp_path, demo_data):
    from mmdet.apis import DetInferencer
    classes = ('person', 'cat', 'cup')
    ckpt = tmp_path / 'mask_rcnn.pth'
    state = _checkpoint(DET_DEMO, ckpt, dict(classes=classes))
    img = _image(demo_data / 'coco' / 'val2017')

    inferencer = DetInferencer(model=str(DET_DEMO), weights=str(ckpt),
                               device='cpu')
    _assert_loaded(inferencer.model, state)
    out = tmp_path / 'out'
    pred = inferencer(img, out_dir=str(out), no_save_pred=False,
                      pred_score_thr=0.0)[
        'predictions'][0]
    n = len(pred['labels'])
    assert 0 < n <= 20  # test_cfg.rcnn.max_per_img of the demo config
    assert len(pred['scores']) == len(pred['bboxes']) == len(
        pred['masks']) == n
    assert set(pred['labels']) <= {0, 1, 2}
    assert all(len(box) == 4 for box in pred['bboxes'])
    # the visualiser of the config drew the image, and the json is written
    name = Path(img).stem
    with Image.open(out / 'vis' / f'{name}.jpg') as vis, Image.open(
            img) as src:
        assert vis.size == src.size
    saved = json.loads((out / 'preds' / f'{name}.json').read_text())
    assert saved['labels'] == pred['labels']


def test_mmseg_inferencer_on_upernet_demo(tmp_path, demo_data):
    from mmseg.apis import MMSegInferencer
    from mmseg.datasets import ADE20KDataset
    meta = dict(ADE20KDataset.METAINFO)
    ckpt = tmp_path / 'upernet.pth'
    state = _checkpoint(SEG_DEMO, ckpt, meta)
    img = _image(demo_data / 'ade' / 'ADEChallengeData2016' / 'images' /
                 'validation')

    inferencer = MMSegInferencer(model=str(SEG_DEMO), weights=str(ckpt),
                                 device='cpu')
    _assert_loaded(inferencer.model, state)
    out = tmp_path / 'out'
    pred = inferencer(img, out_dir=str(out))['predictions']
    with Image.open(img) as src:
        width, height = src.size
    assert pred.shape == (height, width)  # whole-image inference, full size
    assert pred.min() >= 0 and pred.max() < len(meta['classes'])
    with Image.open(out / 'vis' / Path(img).name) as vis:
        assert vis.size == (width, height)
