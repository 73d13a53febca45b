#!/usr/bin/env bash
# The main job on a CPU: UM-MAE pre-training of a small Swin on the bundled
# demo photos (configs/ummae/ummae_swin-mini_demo.py: 400 iterations at
# batch 16, 128 px), logging loss with ETA, writing checkpoints, and ending
# with a reconstruction figure
#   original | US-masked | encoder input with SM patches | reconstruction
# in the work dir (an earlier demo run there is moved to previous_<time>/),
# and WORK_DIR/latest.pth, a link to the run's newest checkpoint (the one
# mmengine's `last_checkpoint` names): the fine-tune, Mask R-CNN and UperNet
# demo configs start from that link, whatever the number of epochs.
# Run through `make demo` (which sets up the venv and the demo data first).
# Extra arguments go to tools/train.py, e.g.
#   bash tools/run_demo.sh --cfg-options train_cfg.max_epochs=5
# The PVT demo (configs/finetune/pvt-mini_ummae-pre_demo.py reads
# work_dirs/ummae_pvt-mini_demo/latest.pth):
#   DEMO_CONFIG=configs/ummae/ummae_pvt-mini_demo.py \
#   DEMO_WORK_DIR=work_dirs/ummae_pvt-mini_demo bash tools/run_demo.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${MMUMAE_VENV:-$ROOT/.venv}/bin/python"
DATA="${DEMO_DATA:-data/demo}"
CONFIG="${DEMO_CONFIG:-configs/ummae/ummae_swin-mini_demo.py}"
WORK_DIR="${DEMO_WORK_DIR:-work_dirs/ummae_swin-mini_demo}"

if [ ! -f "$DATA/imagenet/meta/train.txt" ]; then
  echo "demo data missing in $DATA: run 'make data' (or 'make demo')" >&2
  exit 1
fi
echo "[demo] UM-MAE pre-training: $CONFIG -> $WORK_DIR"
start=$(date +%s)
# no link to a checkpoint of an earlier run while this one trains
rm -f "$WORK_DIR/latest.pth"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --overwrite \
  --cfg-options "train_dataloader.dataset.data_root=$DATA/imagenet" "$@"
figure="$WORK_DIR/reconstruction.png"
[ -s "$figure" ] || { echo "[demo] no reconstruction figure at $figure" >&2; exit 1; }
newest="$(cat "$WORK_DIR/last_checkpoint" 2>/dev/null || true)"
[ -n "$newest" ] && [ -s "$WORK_DIR/$(basename "$newest")" ] || {
  echo "[demo] error: $WORK_DIR/last_checkpoint names no checkpoint in $WORK_DIR" >&2; exit 1; }
ln -sfn "$(basename "$newest")" "$WORK_DIR/latest.pth"
echo "[demo] done in $(( $(date +%s) - start )) s"
echo "[demo] checkpoints and log: $WORK_DIR (latest.pth -> $(basename "$newest"))"
echo "[demo] reconstruction figure: $figure"
