"""Seconds of one ``PrototypeMemoryBank.record`` of a training step: one
view with momentum 0 (DeepCluster-v2's bank) against both views with
momentum 0.5 (NPID's rows), one process.

    python benchmarks/bank_record_cost.py [--images 10000] [--batch 64]
        [--dim 512] [--threads 1] [--steps 60]

Prints the median over the steps after 10 warm-up steps, in ms.
"""
import argparse
import time

import numpy as np
import torch

from hirl_mm.models.utils import PrototypeMemoryBank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=10000)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--steps', type=int, default=60)
    args = parser.parse_args()
    if args.steps <= 10 or args.batch >= args.images:
        parser.error('needs --steps > 10 and --batch < --images')
    torch.set_num_threads(args.threads)
    n, b = args.images, args.batch
    for momentum, views in ((0., 'first'), (0.5, 'all')):
        bank = PrototypeMemoryBank(n, momentum, views)
        g = torch.Generator().manual_seed(0)
        order = torch.randperm(n, generator=g)
        copies = 2 if views == 'all' else 1  # an id once per view
        times = []
        for step in range(args.steps):
            ids = order[(step * b) % (n - b):][:b].repeat(copies)
            feats = torch.randn(len(ids), args.dim, generator=g)
            start = time.perf_counter()
            bank.record(feats, ids)
            times.append(time.perf_counter() - start)
        print(f'N {n}, B {b}, D {args.dim}, momentum {momentum}, views '
              f'{views!r}: {1e3 * np.median(times[10:]):.2f} ms per step')


if __name__ == '__main__':
    main()
