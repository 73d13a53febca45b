"""Install mmumae: UM-MAE pre-training for pyramid ViTs on OpenMMLab."""
import os.path as osp
import re

from setuptools import find_packages, setup


def _version() -> str:
    text = open(osp.join(osp.dirname(__file__), 'mmumae', 'version.py')).read()
    return re.search(r"__version__ = '([^']+)'", text).group(1)


def _requirements(name: str) -> list:
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    lines = [ln.split('#')[0].strip() for ln in open(path)]
    return [ln for ln in lines if ln]


setup(
    name='mmumae',
    version=_version(),
    description='UM-MAE (Uniform Masking MAE) pre-training for pyramid '
    'vision transformers on OpenMMLab',
    long_description=(open('README.md').read()
                      if osp.exists('README.md') else ''),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.8',
    # torch/torchvision and mmcv (built with ops) come first from
    # tools/setup_env.sh; OpenMMLab packages do not declare mmcv/mmengine.
    install_requires=_requirements('runtime.txt') + ['mmcv>=2.0.0,<2.2.0'],
    extras_require={
        'tests': _requirements('tests.txt'),
        'optional': _requirements('optional.txt'),
        'study': _requirements('study.txt'),
        'export': _requirements('export.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
