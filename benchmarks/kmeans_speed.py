"""Speed and quality of the project's k-means (faiss) against scikit-learn's
KMeans and a plain torch Lloyd implementation, and the assignment step's
GFLOP/s against this machine's sgemm GFLOP/s.

    python benchmarks/kmeans_speed.py [--quick]

Data: Gaussian blobs around K planted centres (so NMI against the planted
labels measures quality). Every method runs 20 Lloyd iterations from one
initialisation. Prints a table, writes ``benchmarks/results/kmeans.json``.
"""
import argparse
import json
import os
import os.path as osp
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from hirl_mm.clustering import hierarchical_kmeans

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def blobs(n, d, k, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(k, d).astype(np.float32)
    labels = rng.randint(0, k, n)
    x = centres[labels] + 0.5 * rng.randn(n, d).astype(np.float32)
    return x, labels


def torch_kmeans(x, k, niter=20, seed=0):
    x = torch.from_numpy(x)
    g = torch.Generator().manual_seed(seed)
    cent = x[torch.randperm(len(x), generator=g)[:k]].clone()
    for _ in range(niter):
        dist = (x * x).sum(1, keepdim=True) - 2 * x @ cent.t() + \
            (cent * cent).sum(1)
        assign = dist.argmin(1)
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).clamp(min=1)
        cent = sums / counts[:, None]
    return assign.numpy()


def inertia(x, assign):
    total = 0.0
    for c in np.unique(assign):
        pts = x[assign == c]
        total += float(((pts - pts.mean(0))**2).sum())
    return total


def sgemm_gflops(n, d, k, repeat=7):
    """The best of ``repeat`` float32 (n x d) @ (d x k) products."""
    a, b = torch.randn(n, d), torch.randn(d, k)
    out = torch.empty(n, k)
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n * d * k / best / 1e9


def assign_gflops(x, k):
    import faiss
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x[:k])
    index.search(x[:1000], 1)
    start = time.perf_counter()
    index.search(x, 1)
    return 2 * len(x) * x.shape[1] * k / (time.perf_counter() - start) / 1e9


def run(n, d, k, with_sklearn=True):
    x, labels = blobs(n, d, k)
    row = dict(n=n, d=d, k=k)
    timings = {}
    start = time.perf_counter()
    ours = hierarchical_kmeans(
        x, [k], nredo=1, niter=20, max_points_per_centroid=n).assignments
    timings['hirl_mm (faiss)'] = (time.perf_counter() - start, ours)
    start = time.perf_counter()
    tk = torch_kmeans(x, k)
    timings['torch Lloyd'] = (time.perf_counter() - start, tk)
    if with_sklearn:
        start = time.perf_counter()
        sk = KMeans(
            k,
            init='random',
            n_init=1,
            max_iter=20,
            tol=0,
            algorithm='lloyd',
            random_state=0).fit(x).labels_
        timings['scikit-learn'] = (time.perf_counter() - start, sk)
    for name, (sec, assign) in timings.items():
        row[name] = dict(
            seconds=round(sec, 3),
            inertia=inertia(x, assign),
            nmi=100 * normalized_mutual_info_score(labels, assign))
    row['assign_gflops'] = assign_gflops(x, k)
    row['sgemm_gflops'] = sgemm_gflops(n, d, k)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--quick', action='store_true', help='only the 20k x 128 case')
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks', 'results', 'kmeans.json'))
    args = parser.parse_args()
    cases = [(20000, 128, 1000)]
    if not args.quick:
        cases += [(100000, 128, 1000), (20000, 2048, 1000)]
    rows = [run(*case) for case in cases]
    print(f'{torch.get_num_threads()} threads, 20 Lloyd iterations, 1 init')
    print('| N x D, K | method | seconds | speed-up vs sklearn | inertia | '
          'NMI |\n|---|---|---|---|---|---|')
    for row in rows:
        sk = row.get('scikit-learn', {}).get('seconds')
        for name in ('hirl_mm (faiss)', 'torch Lloyd', 'scikit-learn'):
            if name not in row:
                continue
            r = row[name]
            speed = f'{sk / r["seconds"]:.1f}x' if sk else '-'
            print(f'| {row["n"]} x {row["d"]}, {row["k"]} | {name} | '
                  f'{r["seconds"]:.2f} | {speed} | {r["inertia"]:.4g} | '
                  f'{r["nmi"]:.2f} |')
        print(f'| {row["n"]} x {row["d"]}, {row["k"]} | assignment step | '
              f'{row["assign_gflops"]:.1f} GFLOP/s = '
              f'{100 * row["assign_gflops"] / row["sgemm_gflops"]:.0f}% of '
              f'sgemm ({row["sgemm_gflops"]:.1f} GFLOP/s) | | | |')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(rows, f, indent=2)


if __name__ == '__main__':
    main()
