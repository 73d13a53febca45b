"""Bad data names itself: unreadable images, empty annotation files and
folders, label maps that do not fit.

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
    assert 'pipeline.0.ignore_empty=True' in message
    assert '!buf.empty()' not in message


def test_ignore_empty_skips_bad_images_in_training(tmp_path):
    cfg, data = _setup(tmp_path)
    bad = []
    for kind, (content, _) in sorted(BROKEN.items()):
        bad.append(data / 'a' / f'{kind}.jpg')
        bad[-1].write_bytes(content)
    work_dir = tmp_path / 'wd'
    # In a dataloader worker, as most runs load their data.
    train_tool.main([
        str(cfg), '--work-dir', str(work_dir), '--cfg-options',
        'train_dataloader.dataset.pipeline.0.ignore_empty=True',
        'train_dataloader.num_workers=1'
    ])
    log = log_text(work_dir)
    named = re.findall(r'skipped unreadable image (\S+): ', log)
    assert set(named) == {str(p) for p in bad}
    # 8 files, 6 images, batch 2: both epochs ran in full.
    assert 'Epoch(train) [2][4/4]' in log
    assert (work_dir / 'epoch_2.pth').is_file()


def test_bad_image_in_a_worker_is_one_error_line(tmp_path):
    cfg, data = _setup(tmp_path)
    bad = data / 'a' / 'zero.jpg'
    bad.write_bytes(b'')
    message = _error(cfg, '--work-dir', tmp_path / 'wd', '--cfg-options',
                     'train_dataloader.num_workers=1')
    assert message == (
        f'error: cannot read image {bad}: 0 bytes (an empty file). Remove '
        'or replace it, or skip unreadable training images with '
        'ignore_empty=True on the loader (--cfg-options train_dataloader.'
        'dataset.pipeline.0.ignore_empty=True).')


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
