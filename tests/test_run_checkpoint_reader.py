"""runsafe.read_checkpoint: the one reader of checkpoint files.

Every bad file gets ``not a checkpoint file: PATH (reason)``, a missing one
``checkpoint not found: PATH``; real checkpoints load.
"""
import os
import re

import pytest
import torch

from runsafe import RunError, read_checkpoint


def _good(path):
    torch.save(dict(state_dict=dict(w=torch.ones(64, 64)), meta=dict()),
               path)
    return path


def _random(path):
    path.write_bytes(os.urandom(4096))


def _text(path):
    path.write_text('hello, this is a text file\n' * 10)


def _empty(path):
    path.write_bytes(b'')


def _directory(path):
    path.mkdir()


def _truncated(path):
    data = _good(path).read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _truncated_legacy(path):
    torch.save(dict(state_dict=dict(w=torch.ones(64, 64))), path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _tensor_only(path):
    torch.save(torch.ones(3), path)


def _foreign_object(path):
    torch.save(dict(state_dict=dict(w=torch.ones(2)), x=re.compile('x')),
               path)


@pytest.mark.parametrize('make', [
    _random, _text, _empty, _directory, _truncated, _truncated_legacy,
    _tensor_only, _foreign_object
])
def test_bad_file_is_named_with_a_reason(tmp_path, make):
    path = tmp_path / 'model.pth'
    make(path)
    with pytest.raises(RunError) as info:
        read_checkpoint(str(path))
    message = str(info.value)
    assert re.fullmatch(
        rf'not a checkpoint file: {re.escape(str(path))} \(.+\)', message,
        flags=re.S), message
    assert 'weights_only' not in message


def test_missing_file(tmp_path):
    path = tmp_path / 'nowhere.pth'
    with pytest.raises(RunError, match=r'^checkpoint not found: .*nowhere'):
        read_checkpoint(str(path))


def test_good_files_load(tmp_path):
    zipped = _good(tmp_path / 'a.pth')
    assert read_checkpoint(zipped)['state_dict']['w'].shape == (64, 64)
    legacy = tmp_path / 'b.pth'
    torch.save(dict(w=torch.ones(2)), legacy,
               _use_new_zipfile_serialization=False)
    assert set(read_checkpoint(str(legacy))) == {'w'}
