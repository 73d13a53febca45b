#!/usr/bin/env bash
# Wheels for gpu_check.sh on a GPU cluster without a package index: run it
# where pip reaches one, copy DIR (default .whl) along, and there run
# `WHEELS=DIR bash tools/analysis_tools/gpu_check.sh`. That machine needs
# CPython $PY_VERSION (default 3.12) with torch, torchvision, numpy, opencv,
# matplotlib, pillow, pyyaml, rich and einops; fetched are mmengine,
# mmpretrain, their pure-Python dependencies and mmcv built without ops.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DEST=${1:-.whl}
PY=${BUILD_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -m pip download --no-deps --only-binary=:all: -d "$DEST" \
    --python-version "${PY_VERSION:-3.12}" --implementation cp \
    --platform manylinux2014_x86_64 --platform any \
    mmengine==0.10.7 mmpretrain==1.2.0 addict==2.4.0 yapf==0.43.0 \
    platformdirs==4.14.9 termcolor==3.3.0 importlib-metadata==10.2.0 \
    lazy-importer==0.1.0 mat4py==0.6.0 model-index==0.1.11 ordered-set==4.1.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --no-deps --no-binary=:all: --no-build-isolation \
    -d "$tmp" mmcv==2.1.0
# MMCV_WITH_OPS=0: a pure-Python mmcv 2.1.0 (pre-training uses no mmcv.ops)
MMCV_WITH_OPS=0 "$PY" -m pip wheel --no-deps --no-build-isolation \
    -w "$DEST" "$tmp"/mmcv-2.1.0.tar.gz
