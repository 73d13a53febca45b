"""A stand-in for the GPU image's packages, to rehearse gpu_check.sh here.

The GPU machine has torch and about 200 packages preinstalled but no
mmengine, mmpretrain or mmcv, which travel as the wheels of
``tools/analysis_tools/fetch_gpu_wheels.sh``. To prove on a CPU machine that
those wheels are all it needs, this links into one folder only the
packages of a local environment (the checkout's ``.venv``) whose names are
on the GPU image's list (``GPU_IMAGE_PACKAGES``, as the device notes list
the ``nvidia-h200`` image), so that a fresh interpreter with
``PYTHONPATH=<wheels' target>:<this folder>`` sees what the GPU machine
would::

    python tools/analysis_tools/pretrain_bench/gpu_image_site.py /tmp/gpu_site
    python3.11 -m venv /tmp/rehearse && \\
    GPU_CHECK_PYTHON=/tmp/rehearse/bin/python GPU_CHECK_SITE=/tmp/whl_site \\
    GPU_CHECK_EXTRA_PYTHONPATH=/tmp/gpu_site GPU_CHECK_DEVICE=cpu \\
    GPU_CHECK_QUICK=1 bash tools/analysis_tools/gpu_check.sh /tmp/rehearsal

Only the package *names* are the GPU image's; the versions are the local
ones (torch 2.14 here, 2.11 there).
"""
import argparse
import os
import os.path as osp
import re
import shutil
import sys
from importlib import metadata
from typing import List

#: the nvidia-h200 image's Python packages (names as the device notes list
#: them, 2026-11-17)
GPU_IMAGE_PACKAGES = '''
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc
anyio attrs botorch build certifi charset-normalizer chex click cloudpickle
cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils
execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader
lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath
msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti
nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp
'''.split()
#: local stand-ins under another distribution name (the same module)
ALIASES = {'opencv-python': 'opencv-python-headless'}


def normalize(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def build(dest: str, site: str) -> List[str]:
    """Link the GPU image's packages found in ``site`` into ``dest``."""
    wanted = {normalize(n) for n in GPU_IMAGE_PACKAGES}
    if osp.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    linked = []
    for dist in metadata.distributions(path=[site]):
        name = normalize(dist.metadata['Name'])
        if ALIASES.get(name, name) not in wanted:
            continue
        tops = {str(f).split('/')[0] for f in (dist.files or [])}
        tops = {t for t in tops if t and not t.startswith('..')
                and t != '__pycache__' and not t.endswith('.pth')}
        for top in sorted(tops):
            src, dst = osp.join(site, top), osp.join(dest, top)
            if osp.exists(src) and not osp.lexists(dst):
                os.symlink(src, dst)
        linked.append(name)
    return sorted(linked)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('dest')
    parser.add_argument('--site', default=None,
                        help='site-packages to link from (default: this '
                        "interpreter's)")
    args = parser.parse_args(argv)
    site = args.site or next(p for p in sys.path
                             if p.endswith('site-packages'))
    linked = build(args.dest, site)
    for mod in ('mmengine', 'mmpretrain', 'mmcv', 'addict', 'yapf'):
        if osp.lexists(osp.join(args.dest, mod)):
            raise SystemExit(f'{mod} must not be in the stand-in')
    print(f'{len(linked)} of the GPU image\'s packages linked from {site} '
          f'into {args.dest}')


if __name__ == '__main__':
    main()
