"""Peak resident memory per rank of one clustering step of the prototype
hook, 1 process vs 2 processes (gloo), for both feature sources.

    python benchmarks/prototype_memory.py [--images 50000] [--dim 2048]

A stand-in model gives a fixed random D-dim feature per image. A step is
what :class:`HierarchicalPrototypeHook` does for one clustering: the
features of this rank's shard (``'extract'``: the deterministic pass,
:func:`extract_feature_shard`; ``'memory_bank'``: a training epoch's
``record_proto_feat`` calls, then the bank's de-duplicated shard), the
collective :func:`hierarchical_kmeans` and ``load_clustering``. The peak
resident set of the step (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` when the step starts) minus the resident set
at its start is reported in units of the N x D float32 matrix; the target
is 1 / world + O(K D) on every rank (plus the k-means' fixed-size chunk
buffers, 16 MB on CPU). The code is loaded by a small clustering first,
and glibc's mmap threshold is fixed at 64 KiB (``--glibc-default`` keeps
the dynamic one, under which freed blocks may stay resident). Writes
``benchmarks/results/prototype_memory.json``.
"""
import argparse
import json
import os
import os.path as osp
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.dataset import DefaultSampler
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

from hirl_mm.clustering import hierarchical_kmeans
from hirl_mm.engine import extract_feature_shard
from hirl_mm.models.utils import HierarchicalPrototypes, PrototypeMemoryBank

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
    """Image i's feature: a random vector seeded by i (no D x N table)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def data_preprocessor(self, data, training):
        return data

    def extract_proto_feat(self, idx):
        gen = torch.Generator().manual_seed(int(idx[0]))
        return torch.randn(len(idx), self.dim, generator=gen)


def _status_mb(key):
    with open('/proc/self/status') as f:
        line = next(x for x in f if x.startswith(key + ':'))
    return int(line.split()[1]) / 1024


def collate(batch):
    return dict(
        inputs=torch.stack([x['inputs'] for x in batch]),
        data_samples=[x['data_samples'] for x in batch])


def worker(rank, world, port, n, dim, num_clusters, source, queue):
    if world > 1:
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
        dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.set_num_threads(1)
    dataset = Indices(n)
    model = StandIn(dim)
    protos = HierarchicalPrototypes(num_clusters)
    # the training epoch's order: shuffled, padded (round_up)
    sampler = DefaultSampler(dataset, shuffle=source == 'memory_bank', seed=0)
    if source == 'extract':
        sampler = DefaultSampler(dataset, shuffle=False, round_up=False)
    loader = DataLoader(
        dataset, batch_size=256, sampler=sampler, collate_fn=collate)
    # load the k-means' code (torch, faiss, MKL pages) before measuring
    hierarchical_kmeans(
        torch.randn(2 * num_clusters[0], dim),
        num_clusters,
        niter=1,
        nredo=1,
        distributed=False)
    if world > 1:
        dist.barrier()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak resident set (VmHWM)
    start_mb, start = _status_mb('VmRSS'), time.perf_counter()
    if source == 'extract':
        feats, ids = extract_feature_shard(model.extract_proto_feat, loader,
                                           model)
    else:
        bank = PrototypeMemoryBank(n)
        bank.recording = True
        for data in loader:
            idx = data['inputs']
            bank.record(model.extract_proto_feat(idx), idx)
        feats, ids, missing = bank.shard()
        assert len(missing) == 0
    rows = len(feats)
    clustering = hierarchical_kmeans(
        feats, num_clusters, sample_idx=ids, num_samples=n, niter=5, nredo=1)
    del feats
    protos.load_clustering(clustering, 0)
    queue.put(
        dict(
            source=source,
            world=world,
            rank=rank,
            rows=rows,
            start_mb=start_mb,
            peak_mb=_status_mb('VmHWM'),
            increase_mb=_status_mb('VmHWM') - start_mb,
            seconds=time.perf_counter() - start))
    if world > 1:
        dist.destroy_process_group()


def measure(world, n, dim, num_clusters, source, port):
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=worker,
            args=(r, world, port, n, dim, num_clusters, source, queue))
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
        '--num-clusters', type=int, nargs='+', default=[500, 100, 20])
    parser.add_argument('--port', type=int, default=29555)
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks', 'results',
                         'prototype_memory.json'))
    parser.add_argument(
        '--glibc-default',
        action='store_true',
        help='keep glibc\'s dynamic mmap threshold (default: 64 KiB, fixed, '
        'so that a freed block leaves the resident set)')
    args = parser.parse_args()
    if not args.glibc_default:  # read by the spawned workers at start
        os.environ['MALLOC_MMAP_THRESHOLD_'] = str(2**16)
    n, dim, ks = args.images, args.dim, args.num_clusters
    matrix_mb = n * dim * 4 / 2**20
    centroid_mb = sum(ks) * dim * 4 / 2**20
    rows = []
    for source in ('extract', 'memory_bank'):
        for world in (1, 2):
            rows += measure(world, n, dim, ks, source, args.port + world)
    print(f'N = {n}, D = {dim}, K = {ks}: N x D float32 = {matrix_mb:.0f} '
          f'MB, sum(K) x D = {centroid_mb:.1f} MB; load: '
          f'{os.getloadavg()[0]:.1f}')
    print('| source | processes | rank | rows held | peak increase (MB) | '
          'increase / (N x D) | target 1 / world | seconds |\n'
          '|---|---|---|---|---|---|---|---|')
    for r in rows:
        r['increase_per_matrix'] = r['increase_mb'] / matrix_mb
        print(f'| {r["source"]} | {r["world"]} | {r["rank"]} | {r["rows"]} | '
              f'{r["increase_mb"]:.0f} | {r["increase_per_matrix"]:.2f} | '
              f'{1 / r["world"]:.2f} | {r["seconds"]:.1f} |')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                images=n,
                dim=dim,
                num_clusters=ks,
                matrix_mb=matrix_mb,
                centroid_mb=centroid_mb,
                load_average=os.getloadavg()[0],
                malloc_mmap_threshold=os.environ.get('MALLOC_MMAP_THRESHOLD_'),
                rows=rows),
            f,
            indent=2)


if __name__ == '__main__':
    main()
