#!/usr/bin/env bash
# Fine-tune an MMSegmentation config from a self-supervised checkpoint.
# Usage: tools/transfer/dist_train_seg.sh CONFIG PRETRAIN GPUS [train.py args]
#   e.g. tools/transfer/dist_train_seg.sh \
#        configs/downstream/mmsegmentation/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py \
#        work_dirs/hirl-simsiam/epoch_200.pth 4
exec "$(dirname "$0")/_dist_train_pretrained.sh" "$@"
