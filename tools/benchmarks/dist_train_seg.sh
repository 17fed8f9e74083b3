#!/usr/bin/env bash
# Fine-tune an MMSegmentation config from a self-supervised checkpoint.
# Usage: tools/benchmarks/dist_train_seg.sh CONFIG PRETRAIN GPUS [train.py args]
#   e.g. tools/benchmarks/dist_train_seg.sh \
#        configs/benchmarks/mmsegmentation/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py \
#        work_dirs/hirl-simsiam/epoch_200.pth 4
exec "$(dirname "$0")/_dist_train_pretrained.sh" "$@"
