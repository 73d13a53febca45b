#!/usr/bin/env bash
# The GPU check of docs/benchmark.md ("GPU"), in one go, with no network:
# Swin-T and PVT-S at 256 px, UM-MAE against the reference-geometry SimMIM
# configs, bf16 and fp16, eager and torch.compile: img/s, median step time,
# peak memory (torch.cuda.max_memory_allocated), the largest batch, and a
# torch.profiler table of each model's UM-MAE and SimMIM step; the issue's
# targets checked. Meant for one NVIDIA H200 with Python 3.12 and torch
# preinstalled, finishing inside 8 minutes.
#
# Usage, from the repository root:
#     bash tools/analysis_tools/fetch_gpu_wheels.sh      # once, with PyPI
#     bash tools/analysis_tools/gpu_check.sh [OUT_DIR]   # on the GPU
#
# Output folder: $OUT when set, else OUT_DIR, else work_dirs/gpu_check. It
# gets gpu_check.log (everything printed), gpu_check.md (the tables),
# results.json, profiles.txt and raw.tar.gz: five files.
#
# Environment:
#   GPU_CHECK_DEVICE   cuda (default) or cpu (a rehearsal)
#   GPU_CHECK_QUICK    1: tiny archs, 64 px, batch 2 (a rehearsal)
#   GPU_CHECK_BUDGET   seconds for the measurements (default 420; the
#                      install and the environment print come on top)
#   GPU_CHECK_PHASES   a subset of: eager-bf16 compile-bf16 eager-fp16
#                      compile-fp16 compile-bf16-maxbatch compile-fp16-maxbatch
#   GPU_CHECK_BATCH    timing batch of every variant (default 128)
#   GPU_CHECK_COMPILE_BACKEND  torch.compile backend (default inductor)
#   GPU_CHECK_COMPILE_SCOPE    blocks (default: regional compilation of the
#                      repeated blocks, quick to compile) or parts (backbone
#                      and neck whole)
#   GPU_CHECK_PYTHON   the interpreter (default python3)
#   GPU_CHECK_SITE     where the wheels of .whl/ are installed (default
#                      /tmp/site; skipped when .whl/ has none)
#   GPU_CHECK_EXTRA_PYTHONPATH  appended to PYTHONPATH (a rehearsal's
#                      stand-in for the GPU image's packages)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
OUT_DIR=${OUT:-${1:-work_dirs/gpu_check}}
PY=${GPU_CHECK_PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SITE=${GPU_CHECK_SITE:-/tmp/site}
BUDGET=${GPU_CHECK_BUDGET:-420}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
t_start=$(date +%s)
echo "gpu_check.sh: start $(date -u +%FT%TZ), out $OUT_DIR, device $DEVICE"

if compgen -G ".whl/*.whl" > /dev/null; then
    echo "== installing $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" .whl/*.whl || {
        echo "gpu_check.sh: installing .whl/*.whl failed" >&2; exit 1; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -n "${GPU_CHECK_EXTRA_PYTHONPATH:-}" ]; then
    export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$GPU_CHECK_EXTRA_PYTHONPATH"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# compiled kernels and their caches stay out of the checkout
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/gpu_check_inductor}

echo "== environment"
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
        --format=csv || echo "nvidia-smi failed"
fi
"$PY" - "$DEVICE" <<'EOF' || { echo "gpu_check.sh: the environment check failed" >&2; exit 1; }
import sys
import torch
import mmcv
import mmengine
import mmpretrain
import mmumae
print(f'python {sys.version.split()[0]} ({sys.executable}); torch '
      f'{torch.__version__}, CUDA {torch.version.cuda}; mmengine '
      f'{mmengine.__version__}, mmpretrain {mmpretrain.__version__}, mmcv '
      f'{mmcv.__version__} ({mmcv.__file__}), mmumae {mmumae.__version__}')
if sys.argv[1] == 'cuda':
    if not torch.cuda.is_available():
        sys.exit('GPU_CHECK_DEVICE=cuda but torch sees no GPU')
    p = torch.cuda.get_device_properties(0)
    print(f'GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, '
          f'{p.multi_processor_count} SMs, capability {p.major}.{p.minor}, '
          f'bf16 {torch.cuda.is_bf16_supported()}')
EOF

args=(--out-dir "$OUT_DIR" --device "$DEVICE" --budget "$BUDGET"
      --batch-size "${GPU_CHECK_BATCH:-128}"
      --compile-backend "${GPU_CHECK_COMPILE_BACKEND:-inductor}"
      --compile-scope "${GPU_CHECK_COMPILE_SCOPE:-blocks}")
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && args+=(--quick)
# shellcheck disable=SC2206  # a list of phase names
[ -n "${GPU_CHECK_PHASES:-}" ] && args+=(--phases $GPU_CHECK_PHASES)
"$PY" tools/analysis_tools/pretrain_bench/gpu_check.py "${args[@]}"
rc=$?
echo "gpu_check.sh: done in $(( $(date +%s) - t_start )) s (rc $rc);" \
    "files in $OUT_DIR: $(ls "$OUT_DIR" | tr '\n' ' ')"
exit $rc
