#!/usr/bin/env bash
# Embedded-scale transfer smoke comparison: Mask R-CNN R18-FPN (box / mask
# AP) and FCN R18-D8 (mIoU) on pasted Fashion-MNIST items, from a random
# init and from each given pre-training checkpoint, same budget.
#   tools/transfer/embedded_transfer.sh WORK_DIR [NAME=CKPT ...]
#   e.g. tools/transfer/embedded_transfer.sh work_dirs/transfer \
#        simsiam=work_dirs/main_job/simsiam_seed0/epoch_8.pth \
#        hirl-simsiam=work_dirs/main_job/hirl-simsiam_seed0/epoch_8.pth
# TASKS="det" or "seg" runs one of the two (default both); DET_OPTIONS /
# SEG_OPTIONS: more --cfg-options (e.g. a longer schedule).
# Results: WORK_DIR/{det,seg}_NAME/*/vis_data/scalars.json (last line).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tools/_python.sh"  # PYTHON: the project's, no venv to activate
WORK=$1; shift
DET=$ROOT/configs/downstream/mmdetection/mask-rcnn_r18_fpn_1xb8-100it_fmnist-paste-64x64.py
SEG=$ROOT/configs/downstream/mmsegmentation/fcn_r18-d8_1xb8-100it_fmnist-paste-64x64.py
DET_OPTIONS=${DET_OPTIONS:-}
SEG_OPTIONS=${SEG_OPTIONS:-}

run() {  # TASK CONFIG NAME CKPT
  local args=(--work-dir "$WORK/$1_$3") opts=() extra=$DET_OPTIONS
  [ "$1" = seg ] && extra=$SEG_OPTIONS
  if [ "$4" = none ]; then
    opts=(model.backbone.init_cfg=None)
  else
    args+=(--pretrained "$4")
  fi
  # shellcheck disable=SC2206  # the options are words
  opts+=($extra)
  # one --cfg-options: argparse keeps only the last one
  [ ${#opts[@]} = 0 ] || args+=(--cfg-options "${opts[@]}")
  "$PYTHON" "$ROOT/tools/train.py" "$2" "${args[@]}"
}
for task in ${TASKS:-det seg}; do
  config=$DET; [ "$task" = seg ] && config=$SEG
  run $task "$config" random none
  for pair in "$@"; do
    run $task "$config" "${pair%%=*}" "${pair#*=}"
  done
done
