"""Bad data names itself (issue 9, item 5).

tools/train.py in-process with a real Runner (``SafeRunner``) and a tiny
stock MAE on a folder of random JPEGs, some of them broken.
"""
import re
from pathlib import Path

import pytest
from tool_helpers import (REPO, RUNTIME, load_tool, log_text, mae_model,
                          write_image_folders)

train_tool = load_tool(REPO / 'tools' / 'train.py', 'mmumae_data_train')

MAE_EPOCHS = """
_base_ = ['{runtime}']
{model}
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=2)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(interval=2))
"""


def _setup(tmp_path: Path, sizes=None) -> tuple:
    (tmp_path / 'data').mkdir()
    data = write_image_folders(tmp_path / 'data', sizes or {'a': 6},
                               (40, 48))
    cfg = tmp_path / 'mae_tiny.py'
    cfg.write_text(MAE_EPOCHS.format(runtime=RUNTIME, model=mae_model(data)))
    return cfg, data


def _error(*args) -> str:
    with pytest.raises(SystemExit) as info:
        train_tool.main([str(a) for a in args])
    assert isinstance(info.value.code, str), info.value.code
    return info.value.code


BROKEN = {'zero': (b'', '0 bytes'),
          'garbage': (b'not a JPEG at all' * 8, 'not a decodable image')}


@pytest.mark.parametrize('kind', sorted(BROKEN))
def test_unreadable_image_names_the_file(tmp_path, kind):
    cfg, data = _setup(tmp_path)
    content, reason = BROKEN[kind]
    bad = data / 'a' / 'broken.jpg'
    bad.write_bytes(content)
    message = _error(cfg, '--work-dir', tmp_path / 'wd')
    assert f'cannot read image {bad}: {reason}' in message
    assert 'skip_bad_images=True' in message
    assert '!buf.empty()' not in message


def test_skip_bad_images_reports_each_epoch(tmp_path):
    cfg, data = _setup(tmp_path)
    bad = []
    for kind, (content, _) in sorted(BROKEN.items()):
        bad.append(data / 'a' / f'{kind}.jpg')
        bad[-1].write_bytes(content)
    work_dir = tmp_path / 'wd'
    # One dataloader worker: the count crosses the process boundary.
    train_tool.main([
        str(cfg), '--work-dir', str(work_dir), '--cfg-options',
        'skip_bad_images=True', 'train_dataloader.num_workers=1'
    ])
    log = log_text(work_dir)
    named = re.findall(r'skipped unreadable image (\S+): ', log)
    # Each broken file is loaded (and skipped) at least once per epoch;
    # a replacement drawn at random may be broken again.
    assert set(named) == {str(p) for p in bad}
    assert len(named) >= 2 * len(bad)
    epochs = re.findall(r'Epoch (\d): skipped (\d+) unreadable images', log)
    assert [e for e, _ in epochs] == ['1', '2']
    assert sum(int(n) for _, n in epochs) == len(named)
    assert f'Skipped {len(named)} unreadable images in this run.' in log
    # 8 files, 6 images, batch 2: both epochs ran in full.
    assert 'Epoch(train) [2][4/4]' in log
    assert (work_dir / 'epoch_2.pth').is_file()


def test_empty_annotation_file(tmp_path):
    cfg, data = _setup(tmp_path)
    (data / 'meta.txt').write_text('\n')
    message = _error(cfg, '--work-dir', tmp_path / 'wd', '--cfg-options',
                     'train_dataloader.dataset.ann_file=meta.txt')
    assert f'the annotation file {data / "meta.txt"} is empty' in message
    assert 'one image per line' in message


def test_empty_folder(tmp_path):
    cfg, data = _setup(tmp_path)
    empty = tmp_path / 'empty'
    (empty / 'a').mkdir(parents=True)
    message = _error(cfg, '--work-dir', tmp_path / 'wd', '--cfg-options',
                     f'train_dataloader.dataset.data_root={empty}')
    assert f'{empty} holds no images' in message


def test_fewer_images_than_one_batch_with_drop_last(tmp_path):
    cfg, _ = _setup(tmp_path, {'a': 3})
    message = _error(cfg, '--work-dir', tmp_path / 'wd', '--cfg-options',
                     'train_dataloader.batch_size=4',
                     'train_dataloader.drop_last=True')
    assert '3 images are fewer than one batch (4 per process x 1 ' \
        'processes)' in message
    assert 'lower train_dataloader.batch_size' in message


def test_skip_counter_survives_copies(tmp_path):
    """Deep copies share the count; a pickled copy (not a worker) counts on
    its own instead of failing like a bare multiprocessing.Value."""
    import copy
    import pickle

    from mmumae.datasets import SafeLoadImageFromFile
    bad = tmp_path / 'zero.jpg'
    bad.write_bytes(b'')
    loader = SafeLoadImageFromFile(skip_bad_images=True)
    twin = copy.deepcopy(loader)
    assert twin.transform(dict(img_path=str(bad))) is None
    assert loader.num_skipped == twin.num_skipped == 1
    alone = pickle.loads(pickle.dumps(loader))
    assert alone.skip_bad_images and alone.num_skipped == 0
    assert alone.transform(dict(img_path=str(bad))) is None
    assert (alone.num_skipped, loader.num_skipped) == (1, 1)
