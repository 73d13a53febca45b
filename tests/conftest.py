"""Shared fixtures.

``demo_data`` generates the demo sets once per session into ``data/demo``
(the folder ``make data`` fills; a second session only checks the stamp);
``demo_gen`` is the generator module itself, for tests that need what it
placed.
"""
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_GENERATOR = REPO / 'tools' / 'dataset_converters' / 'make_demo_data.py'


def _load_demo_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location('mmumae_make_demo_data',
                                                  DEMO_GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def demo_gen() -> ModuleType:
    """tools/dataset_converters/make_demo_data.py as a module."""
    return _load_demo_generator()


@pytest.fixture(scope='session')
def demo_data(demo_gen) -> Path:
    """Root of the demo data (``data/demo``), generated when missing."""
    out = REPO / 'data' / 'demo'
    demo_gen.make_demo_data(str(out), verbose=False)
    return out
