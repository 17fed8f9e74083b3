#!/usr/bin/env bash
# Shared by dist_train_det.sh and dist_train_seg.sh: train an MMDetection /
# MMSegmentation config from a self-supervised checkpoint.
# Usage: CONFIG PRETRAIN GPUS [train.py args]
# PRETRAIN goes to tools/train.py --pretrained, which loads it into every
# init_cfg that loads backbone.* weights (the backbone's and a C4 shared
# head's); --cfg-options in the arguments still apply after it. Multi-node:
# NNODES, NODE_RANK, MASTER_ADDR and PORT as for torchrun. torchrun is that
# of the project's Python (tools/_python.sh: $HIRL_MM_PYTHON, else the set-up
# venv): no venv needs activating.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "Usage: $(basename "$0") CONFIG PRETRAIN GPUS [train.py args]" >&2
  exit 2
fi
CONFIG=$1
PRETRAIN=$2
GPUS=$3
shift 3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tools/_python.sh"
# Fail before torchrun starts GPUS processes that would all fail.
if [ ! -f "$PRETRAIN" ]; then
  echo "Pre-trained checkpoint $PRETRAIN does not exist." >&2
  exit 1
fi

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$GPUS" \
    --master_port="${PORT:-29500}" \
    "$ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch --pretrained "$PRETRAIN" "$@"
