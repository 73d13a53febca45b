#!/usr/bin/env bash
# Distributed training with torchrun (one process per GPU).
# Without a GPU, GPUS is the number of CPU processes; add
# `--cfg-options env_cfg.dist_cfg.backend=gloo` (see docs/tools.md).
#
#   tools/dist_train.sh CONFIG GPUS [train.py options...]
#
# Multi-node: run the same command on every node with
#   NNODES=<nodes> NODE_RANK=<this node, 0..NNODES-1> MASTER_ADDR=<node 0> PORT=<free port>
# PYTHON selects the interpreter (default: python).
# A rank that stalls ends the job after env_cfg.dist_cfg.timeout seconds (10
# minutes in the shared runtime); re-submit with --resume.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [tools/train.py options...]" >&2
  exit 1
fi
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

exec "${PYTHON:-python}" -m torch.distributed.run \
  --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" \
  --master_port="$PORT" \
  --nproc_per_node="$GPUS" \
  "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "$@"
