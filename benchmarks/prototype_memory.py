"""Peak resident memory per rank of the prototype hook's feature gathering,
1 process vs 2 processes (gloo), and the ImageNet-scale projection.

    python benchmarks/prototype_memory.py [--images 50000] [--dim 2048]

A stand-in model returns a D-dim feature per image, so only the hook's
extraction and gathering (:func:`hirl_mm.engine.extract_features`, as the
prototype hook calls it) is measured.
Writes ``benchmarks/results/prototype_memory.json``.
"""
import argparse
import json
import os
import os.path as osp
import resource

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.dataset import DefaultSampler
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

from hirl_mm.engine import extract_features

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class Indices(Dataset):

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return dict(
            inputs=torch.tensor(i),
            data_samples=DataSample(metainfo=dict(sample_idx=i)))


class StandIn(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def data_preprocessor(self, data, training):
        return data

    def extract_proto_feat(self, idx):
        return torch.randn(len(idx), self.dim)


def rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def worker(rank, world, n, dim, queue):
    if world > 1:
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='29555')
        dist.init_process_group('gloo', rank=rank, world_size=world)
    dataset = Indices(n)
    loader = DataLoader(
        dataset,
        batch_size=512,
        collate_fn=lambda b: dict(
            inputs=torch.stack([x['inputs'] for x in b]),
            data_samples=[x['data_samples'] for x in b]),
        sampler=DefaultSampler(dataset, shuffle=False, round_up=False, seed=0))
    before = rss_mb()
    model = StandIn(dim)
    feats = extract_features(model.extract_proto_feat, loader, model=model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        dict(
            world=world,
            rank=rank,
            peak_mb=peak,
            increase_mb=peak - before,
            holds_matrix=feats is not None))
    if world > 1:
        dist.destroy_process_group()


def measure(world, n, dim):
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(r, world, n, dim, queue))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    rows = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sorted(rows, key=lambda r: r['rank'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=50000)
    parser.add_argument('--dim', type=int, default=2048)
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks', 'results',
                         'prototype_memory.json'))
    args = parser.parse_args()
    matrix_mb = args.images * args.dim * 4 / 2**20
    rows = measure(1, args.images, args.dim) + measure(2, args.images,
                                                       args.dim)
    print(f'N = {args.images}, D = {args.dim}: the N x D float32 matrix is '
          f'{matrix_mb:.0f} MB')
    print('| processes | rank | clusters | peak RSS (MB) | increase during '
          'extraction (MB) | increase / (N x D) |\n|---|---|---|---|---|---|')
    for r in rows:
        print(f'| {r["world"]} | {r["rank"]} | {r["holds_matrix"]} | '
              f'{r["peak_mb"]:.0f} | {r["increase_mb"]:.0f} | '
              f'{r["increase_mb"] / matrix_mb:.2f} |')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                images=args.images,
                dim=args.dim,
                matrix_mb=matrix_mb,
                rows=rows),
            f,
            indent=2)


if __name__ == '__main__':
    main()
