"""Convert a reference's released checkpoint into an MMPretrain backbone.

The output has ``backbone.*`` keys: ``tools/train.py --pretrained OUT``,
``tools/test.py CONFIG OUT`` and ``tools/model_converters/extract_backbone.py
OUT ...`` take it as they take a hirl_mm checkpoint.

Examples::

    # HIRL-MoCo v2 ResNet-50 (hirl-team/HIRL), format detected
    python tools/model_converters/import_pretrained.py \
        hirl_mocov2_200eps_backbone.pth hirl-mocov2_r50.pth
    # DINO ViT-B/16, checked to be one
    python tools/model_converters/import_pretrained.py \
        dino_vitbase16_pretrain.pth dino_vit-b16.pth \
        --format dino --arch vit-base-p16
"""
import argparse
import os
import os.path as osp

import torch

from hirl_mm.utils.model_converters import IMPORT_FORMATS, import_pretrained


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert a released checkpoint of HIRL, HCSC, SS-PRL, '
        'SwAV, DINO or iBOT into an MMPretrain backbone checkpoint')
    parser.add_argument('src', help='the released checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument(
        '--format',
        choices=('auto', ) + IMPORT_FORMATS,
        default='auto',
        help='the layout of SRC (default: detected)')
    parser.add_argument(
        '--arch',
        help='the architecture SRC must be, e.g. resnet50, vit-base-p16 '
        '(default: read from its shapes)')
    parser.add_argument(
        '--trust-pickle',
        action='store_true',
        help='load SRC with weights_only=False (arbitrary Python objects); '
        'only for a file from a source you trust')
    return parser.parse_args()


def main():
    args = parse_args()
    imported = import_pretrained(
        args.src, args.format, arch=args.arch, trust_pickle=args.trust_pickle)
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    torch.save(
        dict(
            state_dict={
                f'backbone.{k}': v
                for k, v in imported.state.items()
            },
            meta=dict(
                source=args.src,
                format=imported.fmt,
                arch=imported.arch,
                backbone=imported.backbone)), args.dst)
    dropped = ', '.join(imported.dropped) or 'nothing'
    print(f'{args.src} ({imported.fmt}) -> {args.dst}: {imported.arch}, '
          f'{len(imported.state)} tensors, strict load checked; left out: '
          f'{dropped}\nbackbone config: {imported.backbone}')


if __name__ == '__main__':
    main()
