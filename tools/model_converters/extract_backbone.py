"""Export the backbone of a self-supervised checkpoint.

Examples::

    # MMPretrain / MMDetection / MMSegmentation (bare backbone keys)
    python tools/model_converters/extract_backbone.py \
        work_dirs/hirl-simsiam/epoch_200.pth hirl-simsiam_r50_backbone.pth
    # keep "backbone." for init_cfg=dict(type='Pretrained', prefix='backbone.')
    python tools/model_converters/extract_backbone.py CKPT OUT --keep-prefix
    # torchvision resnet50 / timm vit_base_patch16_224 state dicts
    python tools/model_converters/extract_backbone.py CKPT OUT \
        --format torchvision
    python tools/model_converters/extract_backbone.py CKPT OUT --format timm
    # detectron2 ResNet (.pkl: MODEL.WEIGHTS, RESNETS.STRIDE_IN_1X1 False)
    python tools/model_converters/extract_backbone.py CKPT r50.pkl \
        --format detectron2
"""
import argparse
import os
import os.path as osp
import pickle

import torch

import hirl_mm
from hirl_mm.utils.model_converters import (FORMATS, convert_backbone,
                                            detectron2_checkpoint)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Extract the backbone of a self-supervised checkpoint')
    parser.add_argument('checkpoint', help='hirl_mm / MMPretrain checkpoint')
    parser.add_argument('out', help='output file')
    parser.add_argument(
        '--format',
        choices=FORMATS,
        default='mmpretrain',
        help='key names of the output: mmpretrain (also mmdet / mmseg), '
        'torchvision (ResNet), timm (ViT) or detectron2 (ResNet, .pkl)')
    parser.add_argument(
        '--keep-prefix',
        action='store_true',
        help='keep the "backbone." prefix (mmpretrain format only)')
    return parser.parse_args()


def main():
    # the checkpoint is read with weights_only=True: mmengine's globals go
    # on the allow-list by this explicit call
    hirl_mm.register_safe_globals()
    args = parse_args()
    state = convert_backbone(
        args.checkpoint, fmt=args.format, keep_prefix=args.keep_prefix)
    if osp.dirname(args.out):
        os.makedirs(osp.dirname(args.out), exist_ok=True)
    if args.format == 'mmpretrain':
        torch.save(
            dict(state_dict=state, meta=dict(source=args.checkpoint)),
            args.out)
    elif args.format == 'detectron2':  # what DetectionCheckpointer reads
        with open(args.out, 'wb') as f:
            pickle.dump(detectron2_checkpoint(state), f)
    else:  # what torchvision / timm models' load_state_dict take
        torch.save(state, args.out)
    print(f'{len(state)} {args.format} tensors -> {args.out}')


if __name__ == '__main__':
    main()
