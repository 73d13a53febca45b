"""Shared fixtures.

``demo_data`` generates the demo sets once per test run into ``data/demo``
(the folder ``make data`` fills; a later run only checks the stamp);
``demo_gen`` is the generator module (:mod:`mmumae_tools.demo_data`), for
tests that need what it placed. Every test also gets back the mmengine
default scope it started with (see ``_keep_default_scope``).
"""
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def demo_gen() -> ModuleType:
    """The demo-data generator, :mod:`mmumae_tools.demo_data`."""
    from mmumae_tools import demo_data
    return demo_data


@pytest.fixture(scope='session')
def demo_data(demo_gen) -> Path:
    """Root of the demo data (``data/demo``), generated when missing."""
    out = REPO / 'data' / 'demo'
    demo_gen.make_demo_data(str(out), verbose=False)
    return out


@pytest.fixture(autouse=True)
def _keep_default_scope():
    """Restore mmengine's default scope after each test.

    A ``Runner`` (or ``init_default_scope``) makes its scope the current
    ``DefaultScope`` for the rest of the process; a later test that builds
    from a registry without naming a scope would then look in the wrong
    one (e.g. ``mmengine::transform`` instead of ``mmpretrain``).
    """
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
