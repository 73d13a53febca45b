"""The method package stands alone: ``mmumae`` imports nothing of the
run-safety add-on (``runsafe``) or the tools package (``mmumae_tools``),
importing it changes no global state of mmengine, torch or numpy, and no
file of the repository reaches its modules through ``sys.path``."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Imports mmumae in a fresh interpreter and reports what it loaded and the
# global state that an import could change.
PROBE = r'''
import json, sys
import numpy as np, torch
# what mmumae builds on, imported first: torch registers safe globals of its
# own when some of its modules are first imported
import mmpretrain.datasets, mmpretrain.engine, mmpretrain.models  # noqa
import mmpretrain.visualization  # noqa
from mmengine.fileio.backends import backends
from mmengine.runner import CheckpointLoader

def state():
    return dict(
        loaders=sorted((k, v.__module__ + '.' + v.__qualname__)
                       for k, v in CheckpointLoader._schemes.items()),
        backends=sorted(backends),
        np_err=sorted(np.geterr().items()),
        torch_threads=torch.get_num_threads(),
        torch_dtype=str(torch.get_default_dtype()),
        grad=torch.is_grad_enabled(),
        safe_globals=len(torch.serialization.get_safe_globals()),
    )

before = state()
import mmumae  # noqa: F401
print(json.dumps(dict(
    before=before, after=state(),
    modules=sorted(m for m in sys.modules
                   if m.split('.')[0] in ('runsafe', 'mmumae_tools')))))
'''


def test_mmumae_imports_nothing_of_runsafe_or_the_tools():
    out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result['modules'] == []


def test_importing_mmumae_changes_no_global_state():
    out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result['before'] == result['after']


def test_the_probe_sees_runsafe_change_the_checkpoint_loader():
    """The state probe is not blind: importing runsafe (which registers its
    checkpoint reader for local files) shows up in it."""
    probe = PROBE.replace('import mmumae  # noqa: F401', 'import runsafe')
    out = subprocess.run([sys.executable, '-c', probe], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result['before']['loaders'] != result['after']['loaders']


def test_no_file_edits_sys_path():
    found = [
        f'{path.relative_to(REPO)}:{number}'
        for folder in ('mmumae', 'runsafe', 'mmumae_tools', 'tools')
        for path in sorted((REPO / folder).rglob('*.py'))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if 'sys.path' in line
    ]
    assert not found
