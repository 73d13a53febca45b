#!/usr/bin/env bash
# The GPU benchmark in one command, on any machine with a CUDA GPU (see
# docs/benchmark.md): UM-MAE against SimMIM, Swin-T and PVT-S, bf16 and
# fp16, eager and torch.compile. Tables in OUT_DIR/gpu_benchmark.md.
#
#     bash tools/analysis_tools/gpu_check.sh [OUT_DIR] [-- BENCHMARK ARGS]
#
# Uses $PYTHON (default python3) as it is when it imports mmpretrain and
# mmumae; else installs mmumae into it (pip install -e .), or with WHEELS=DIR
# the wheels fetch_gpu_wheels.sh made (clusters without a package index).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT_DIR=work_dirs/gpu_benchmark
if [ $# -gt 0 ] && [ "$1" != -- ]; then OUT_DIR=$1; shift; fi
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${WHEELS:-}" ]; then
    site=${TMPDIR:-/tmp}/mmumae_gpu_site
    "$PY" -m pip install -q --no-index --no-deps --upgrade --target "$site" \
        "$WHEELS"/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
elif ! "$PY" -c 'import mmpretrain, mmumae' 2>/dev/null; then
    "$PY" -m pip install -e .
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -m mmumae_tools.benchmark.gpu --out-dir "$OUT_DIR" "$@"
