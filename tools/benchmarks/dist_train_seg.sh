#!/usr/bin/env bash
# Fine-tune an MMSegmentation config from a self-supervised checkpoint.
# Usage: tools/benchmarks/dist_train_seg.sh CONFIG PRETRAIN GPUS [train.py args]
#   e.g. tools/benchmarks/dist_train_seg.sh \
#        configs/benchmarks/mmsegmentation/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py \
#        work_dirs/hirl-simsiam/epoch_200.pth 4
# PRETRAIN goes to every init_cfg that loads backbone.* weights through
# --cfg-options; further
# --cfg-options in the arguments are kept. Multi-node: NNODES, NODE_RANK,
# MASTER_ADDR and PORT as for torchrun.
set -euo pipefail
CONFIG=$1
PRETRAIN=$2
GPUS=$3
shift 3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python}
if [ ! -f "$PRETRAIN" ]; then
  echo "Pre-trained checkpoint $PRETRAIN does not exist." >&2
  exit 1
fi
mapfile -t OPTS < <(PYTHONPATH="$ROOT:${PYTHONPATH:-}" "$PYTHON" -c \
  "import sys; from hirl_mm.utils.transfer import pretrained_cfg_options as f; print(*f(*sys.argv[1:]), sep='\n')" \
  "$CONFIG" "$PRETRAIN")
# Join the user's --cfg-options (argparse keeps only the last one).
ARGS=()
JOINED=0
for arg in "$@"; do
  ARGS+=("$arg")
  if [ "$arg" = "--cfg-options" ]; then
    ARGS+=("${OPTS[@]}")
    JOINED=1
  fi
done
[ $JOINED = 1 ] || ARGS+=(--cfg-options "${OPTS[@]}")

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes=${NNODES:-1} \
    --node_rank=${NODE_RANK:-0} \
    --master_addr=${MASTER_ADDR:-127.0.0.1} \
    --nproc_per_node=$GPUS \
    --master_port=${PORT:-29500} \
    "$ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${ARGS[@]}"
