"""Write a seeded, class-balanced label subset of an annotation file.

The input is MMPretrain's annotation format (``relative/path label`` per
line, e.g. ImageNet's ``meta/train.txt``); the output keeps ``percent`` % of
every class, chosen with ``--seed``:

    python tools/dataset_converters/make_label_subset.py \
        data/imagenet/meta/train.txt data/imagenet/meta/train_1pct.txt \
        --percent 1
"""
import argparse

import numpy as np

from hirl_mm.datasets import balanced_subset


def make_label_subset(src: str, dst: str, percent: float, seed: int = 0):
    with open(src) as f:
        lines = [line for line in f if line.strip()]
    labels = np.array([int(line.split()[-1]) for line in lines])
    size = int(round(len(lines) * percent / 100))
    keep = balanced_subset(labels, size, seed)
    with open(dst, 'w') as f:
        f.writelines(lines[i] for i in keep)
    return keep


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='annotation file to sample from')
    parser.add_argument('dst', help='annotation file to write')
    parser.add_argument('--percent', type=float, required=True)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    keep = make_label_subset(args.src, args.dst, args.percent, args.seed)
    print(f'wrote {len(keep)} samples to {args.dst}')


if __name__ == '__main__':
    main()
