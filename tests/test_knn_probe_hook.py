"""KNNProbeHook: a kNN score of the frozen backbone during pre-training,
logged through mmengine's logger and visualizer; the test split is never
read."""
import json

import pytest
import torch
from tool_helpers import REPO, load_tool, log_text, write_image_folders

from mmumae.engine.hooks import KNNProbeHook, knn_predict

train_tool = load_tool(REPO / 'tools' / 'train.py', 'mmumae_knn_train')
DEMO = 'configs/ummae/ummae_swin-mini_demo.py'


def test_knn_votes_follow_the_nearest_weighted_neighbours():
    train = torch.tensor([[1., 0.], [0.9, 0.1], [0., 1.], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1., 0.05], [0.05, 1.]])
    assert knn_predict(train, labels, query, 2, k=3).argmax(1).tolist() \
        == [0, 1]
    # the vote weights exp(sim / T): with k=4 the two near ones still win
    votes = knn_predict(train, labels, query, 2, k=4)
    assert (votes[0, 0] > votes[0, 1]) and (votes[1, 1] > votes[1, 0])
    # features and labels stay aligned: a feature's label, not a neighbour's
    assert knn_predict(train, labels, train, 2, k=1).argmax(1).tolist() == \
        labels.tolist()


def test_the_test_split_is_refused():
    with pytest.raises(ValueError, match='test split'):
        KNNProbeHook(val_prefix='test')


@pytest.fixture
def labelled(tmp_path):
    for split in ('train', 'val'):
        (tmp_path / 'lab' / split).mkdir(parents=True)
        write_image_folders(tmp_path / 'lab' / split, {'a': 4, 'b': 4},
                            (40, 48))
    return tmp_path / 'lab'


def _train(tmp_path, demo_data, hook: dict):
    """Two short epochs of the demo pre-training with ``hook``."""
    cfg, work_dir = tmp_path / 'knn_demo.py', tmp_path / 'wd'
    cfg.write_text(f"_base_ = ['{REPO / DEMO}']\ncustom_hooks = [{hook!r}]\n")
    train_tool.main([
        str(cfg), '--work-dir', str(work_dir), '--cfg-options',
        'train_cfg.max_epochs=2',
        f'train_dataloader.dataset.data_root={demo_data}/imagenet',
        'train_dataloader.dataset.indices=8',
        'train_dataloader.batch_size=4'
    ])
    return work_dir


def test_hook_logs_the_score_every_interval(tmp_path, demo_data, labelled):
    """A real pre-training run scores after epochs 1 and 2 and writes the
    score to the log and to the visualizer's scalars file."""
    hook = dict(type='KNNProbeHook', data_root=str(labelled), interval=1,
                img_size=64)
    work_dir = _train(tmp_path, demo_data, hook)
    log = log_text(work_dir)
    for epoch in (1, 2):
        assert f'Epoch {epoch}: kNN accuracy of the frozen backbone on ' \
            'val: ' in log
    scalars = [json.loads(line) for line in
               next(work_dir.glob('*/vis_data/scalars.json')).open()]
    scores = [s['knn/accuracy'] for s in scalars if 'knn/accuracy' in s]
    assert len(scores) == 2 and all(0 <= s <= 100 for s in scores)


def test_score_pairs_each_image_with_its_own_label(tmp_path, demo_data,
                                                   labelled):
    """Scoring the training images against themselves with k=1 gives 100%:
    features and labels are read in the same order."""
    hook = dict(type='KNNProbeHook', data_root=str(labelled), interval=2,
                img_size=64, val_prefix='train', k=1)
    work_dir = _train(tmp_path, demo_data, hook)
    assert 'Epoch 2: kNN accuracy of the frozen backbone on train: 100.00' \
        in log_text(work_dir)


def test_a_missing_folder_names_itself(tmp_path, demo_data):
    hook = dict(type='KNNProbeHook', data_root=str(tmp_path / 'none'),
                interval=1, img_size=64)
    with pytest.raises(FileNotFoundError, match='none/train'):
        _train(tmp_path, demo_data, hook)
