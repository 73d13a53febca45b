#!/usr/bin/env bash
# Fill .whl/ with the wheels tools/analysis_tools/gpu_check.sh installs on a
# GPU machine that has Python 3.12, torch, CUDA and no package registry.
#
# Usage (from anywhere; needs PyPI and a Python with torch and setuptools to
# build mmcv, by default the checkout's .venv):
#
#     bash tools/analysis_tools/fetch_gpu_wheels.sh
#
# What travels: mmengine 0.10.7, mmpretrain 1.2.0, mmcv 2.1.0 built here
# WITHOUT compiled ops (MMCV_WITH_OPS=0: a pure-Python wheel; pre-training
# needs no mmcv.ops), and the runtime dependencies of the three that a plain
# torch image lacks. Already on the GPU image (not fetched): torch,
# torchvision, numpy, matplotlib, pyyaml, rich, einops, opencv-python-headless
# (cv2), pillow, packaging, click, markdown, zipp. mmdet and mmseg are not
# needed (mmumae registers its backbones there only when they are installed).
#
# The versions are those this project is tested with. .whl/ is ignored by git
# (.gitignore and .git/info/exclude); the total size is printed at the end
# (the device tool carries at most 64 MiB with the working tree).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
DEST=${WHEEL_DIR:-.whl}
BUILD_PY=${BUILD_PYTHON:-$REPO/.venv/bin/python}
[ -x "$BUILD_PY" ] || BUILD_PY=python3

# pure-Python wheels (py3-none-any): name==version, one line each
PURE=(
    mmengine==0.10.7
    mmpretrain==1.2.0
    addict==2.4.0            # mmengine.config
    yapf==0.43.0             # mmengine.config
    platformdirs==4.14.9     # yapf
    termcolor==3.3.0         # mmengine.logging
    importlib-metadata==10.2.0  # mmpretrain.utils.dependency
    lazy-importer==0.1.0     # importlib-metadata 10
    mat4py==0.6.0            # mmpretrain.datasets
    model-index==0.1.11      # mmpretrain.apis
    ordered-set==4.1.0       # model-index
)

mkdir -p "$DEST"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || {
    mkdir -p .git/info && echo '/.whl/' >> .git/info/exclude; }
rm -f "$DEST"/*.whl

"$BUILD_PY" -m pip download --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -d "$DEST" "${PURE[@]}"

# mmcv 2.1.0 has only an sdist on PyPI: build it here without ops.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BUILD_PY" -m pip download --no-deps --no-binary=:all: \
    --no-build-isolation -d "$tmp" mmcv==2.1.0
MMCV_WITH_OPS=0 "$BUILD_PY" -m pip wheel --no-deps --no-build-isolation \
    -w "$tmp/wheel" "$tmp"/mmcv-2.1.0.tar.gz
# (MMCV_WITH_OPS=0 names the distribution mmcv-lite; it installs the same
# "mmcv" package, version 2.1.0, minus the compiled extension)
mmcv_whl=$(ls "$tmp"/wheel/mmcv*-2.1.0-*.whl)
case "$mmcv_whl" in
    *-none-any.whl) ;;
    *) echo "mmcv built as $mmcv_whl, not a pure-Python wheel:" \
            "MMCV_WITH_OPS=0 was not honoured" >&2; exit 1 ;;
esac
if unzip -l "$mmcv_whl" | grep -q '\.so$'; then
    echo "$mmcv_whl holds compiled code; expected none" >&2; exit 1
fi
cp "$mmcv_whl" "$DEST"/

# every wheel must be installable on CPython 3.12 with no compiler
for w in "$DEST"/*.whl; do
    case "$w" in
        *-py3-none-any.whl|*-py2.py3-none-any.whl) ;;
        *) echo "$w is not a pure-Python wheel" >&2; exit 1 ;;
    esac
done

ls -l "$DEST"
n=$(ls "$DEST"/*.whl | wc -l)
bytes=$(cat "$DEST"/*.whl | wc -c)
echo "total: $n wheels, $bytes bytes ($(awk "BEGIN{printf \"%.2f\", $bytes/1048576}") MiB) in $DEST"
