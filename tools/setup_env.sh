#!/usr/bin/env bash
# Idempotent set-up of the mmumae development environment.
#
# Creates .venv/ in the repository (ignored by git) with torch 2.14.1,
# torchvision 0.29.1, mmcv 2.1.0 WITH compiled ops, mmengine, mmpretrain,
# mmdet, mmsegmentation and mmumae itself (editable). Every step prints what it
# does. A second run on a ready machine only checks a stamp and returns.
#
# mmcv 2.1.0 ships only as an sdist; it is patched to C++20 (torch 2.14's
# headers require it) and built without build isolation (an isolated build
# sees no torch and silently builds no ops). The wheel is cached in
# $MMUMAE_WHEEL_CACHE (default ~/.cache/mmumae/wheels) so it is built once per
# machine; a matching ready wheel in ../shared/wheels/ is used when present.
# With nvcc available, FORCE_CUDA=1 builds the CUDA ops.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${MMUMAE_VENV:-$ROOT/.venv}"
CACHE="${MMUMAE_WHEEL_CACHE:-$HOME/.cache/mmumae/wheels}"
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0

step() { echo "[setup $(date +%H:%M:%S)] $*"; }

stamp_inputs() {
  cat "$ROOT/tools/setup_env.sh" "$ROOT"/requirements/*.txt "$ROOT/setup.py" 2>/dev/null | sha256sum | cut -d' ' -f1
}
STAMP="$VENV/.mmumae-setup-stamp"
WANT="$(stamp_inputs)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import mmcv.ops, mmumae, runsafe, mmumae_tools" 2>/dev/null; then
  step "environment in $VENV is up to date (delete $STAMP to force a re-install)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
step "upgrading pip, installing build tools (setuptools>=77,<81: mmcv's setup.py needs pkg_resources)"
"${PIP[@]}" install -q --upgrade "pip<26" "setuptools>=77,<81" wheel ninja

if ! "$PY" -c "import torch, torchvision, sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' and torchvision.__version__.split('+')[0]=='$TORCHVISION_VERSION' else 1)" 2>/dev/null; then
  step "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (large; about a minute when the files are local)"
  "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
else
  step "torch $TORCH_VERSION and torchvision $TORCHVISION_VERSION already installed"
fi

mmcv_ok() { "$PY" -c "import mmcv, mmcv.ops; from mmcv.ops import nms, RoIAlign; assert mmcv.__version__=='$MMCV_VERSION'" 2>/dev/null; }
if mmcv_ok; then
  step "mmcv $MMCV_VERSION with ops already installed"
else
  PYTAG="cp$("$PY" -c 'import sys;print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
  CUDA_TAG=cpu
  if [ "${FORCE_CUDA:-0}" = "1" ] || { command -v nvcc >/dev/null && "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }; then
    export FORCE_CUDA=1; CUDA_TAG=cuda
  fi
  WHEEL_DIR="$CACHE/torch-$TORCH_VERSION-$PYTAG-$CUDA_TAG"
  SHARED_DIR="$ROOT/../shared/wheels/torch-$TORCH_VERSION-py${PYTAG#cp}-$CUDA_TAG"
  WHEEL=""
  if [ -d "$SHARED_DIR" ] && ls "$SHARED_DIR"/mmcv-$MMCV_VERSION-$PYTAG-*.whl >/dev/null 2>&1; then
    step "checking the ready mmcv wheel in $SHARED_DIR"
    if (cd "$SHARED_DIR" && sha256sum -c --quiet SHA256SUMS); then
      WHEEL="$(ls "$SHARED_DIR"/mmcv-$MMCV_VERSION-$PYTAG-*.whl | head -n1)"
    else
      step "checksum mismatch in $SHARED_DIR, ignoring it"
    fi
  fi
  if [ -z "$WHEEL" ] && ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-$PYTAG-*.whl >/dev/null 2>&1; then
    WHEEL="$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-$PYTAG-*.whl | head -n1)"
    step "using cached mmcv wheel $WHEEL"
  fi
  if [ -z "$WHEEL" ]; then
    BUILD="$(mktemp -d)"
    step "no ready mmcv wheel for $PYTAG/torch $TORCH_VERSION/$CUDA_TAG: building mmcv $MMCV_VERSION from source in $BUILD"
    step "this compiles about 77 objects: roughly 25 minutes on 2 cores (progress below)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    step "patching setup.py: -std=c++14/17 -> -std=c++20 (torch $TORCH_VERSION headers require C++20)"
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    mkdir -p "$WHEEL_DIR"
    # A heartbeat every minute (objects compiled so far), whatever pip shows.
    ( while sleep 60; do
        step "compiling mmcv ops: $(find "$SRC/build" -name '*.o' 2>/dev/null | wc -l) of about 77 objects built"
      done ) &
    HEARTBEAT=$!
    (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" wheel -v --no-deps --no-build-isolation -w "$WHEEL_DIR" . 2>&1 \
      | grep --line-buffered -E '\[[0-9]+/[0-9]+\]|error:|Error|Successfully|Building wheel' || true)
    kill "$HEARTBEAT" 2>/dev/null || true
    WHEEL="$(ls "$WHEEL_DIR"/mmcv-$MMCV_VERSION-$PYTAG-*.whl 2>/dev/null | head -n1 || true)"
    [ -n "$WHEEL" ] || { echo "mmcv build failed: no wheel in $WHEEL_DIR" >&2; exit 1; }
    (cd "$WHEEL_DIR" && sha256sum mmcv-*.whl > SHA256SUMS)
    rm -rf "$BUILD"
    step "built and cached $WHEEL"
  fi
  step "installing $WHEEL"
  "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL"
  "${PIP[@]}" install -q addict yapf packaging opencv-python "mmengine==0.10.7"
  mmcv_ok || { echo "mmcv installed but mmcv.ops does not import: the wheel was built without ops" >&2; exit 1; }
fi

step "installing OpenMMLab packages, test tools and the study data package (requirements/runtime.txt, tests.txt, study.txt)"
"${PIP[@]}" install -q -r requirements/runtime.txt -r requirements/tests.txt -r requirements/study.txt
# openmim (`mim train/test mmdet|mmseg|mmpretrain CONFIG`) without its
# dependencies: its opendatalab -> openxlab chain pins setuptools~=60.2 (and
# requests~=2.28, rich~=13.4), which would replace the setuptools>=77 that
# torch 2.14 needs. What mim imports at run time is in requirements/tests.txt;
# only `mim download` of data sets would need opendatalab's `odl`.
MIM_VERSION=0.3.9
step "installing openmim $MIM_VERSION with --no-deps (its openxlab dependency would downgrade setuptools to 60.2)"
"${PIP[@]}" install -q --no-deps "openmim==$MIM_VERSION"
"$VENV/bin/mim" --version 2>/dev/null | grep -q "version $MIM_VERSION" || {
  echo "openmim installed but '$VENV/bin/mim --version' does not answer $MIM_VERSION" >&2; exit 1; }
step "installing this repository (editable: mmumae, runsafe, mmumae_tools)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
step "checking imports"
"$PY" - <<'PY'
import torch, mmcv, mmcv.ops, mmengine, mmpretrain, mmdet, mmseg, mmumae
import mmumae_tools, runsafe  # noqa: F401  (installed beside mmumae)
print(f"torch {torch.__version__} | mmcv {mmcv.__version__} (ops) | mmengine {mmengine.__version__} | "
      f"mmpretrain {mmpretrain.__version__} | mmdet {mmdet.__version__} | mmseg {mmseg.__version__} | "
      f"mmumae {mmumae.__version__}")
PY
echo "$WANT" > "$STAMP"
step "done"
