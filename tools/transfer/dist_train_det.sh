#!/usr/bin/env bash
# Fine-tune an MMDetection config from a self-supervised checkpoint.
# Usage: tools/transfer/dist_train_det.sh CONFIG PRETRAIN GPUS [train.py args]
#   e.g. tools/transfer/dist_train_det.sh \
#        configs/downstream/mmdetection/mask-rcnn_r50_fpn_ms-1x_coco.py \
#        work_dirs/hirl-simsiam/epoch_200.pth 8
exec "$(dirname "$0")/_dist_train_pretrained.sh" "$@"
