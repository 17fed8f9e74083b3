"""Speed and quality of the distributed k-means (``backend='torch'``)
against faiss, on CPU and on a GPU, and its projection to ImageNet scale.

    python benchmarks/kmeans_speed.py              # CPU: 100k x 128, K=1000
    python benchmarks/kmeans_speed.py --device cuda [--sizes 1280000x128 ...]
    python benchmarks/kmeans_speed.py --project    # ImageNet, 8 GPUs

CPU: ``hierarchical_kmeans`` with the faiss backend (``faiss.Kmeans`` plus
the final search that gives the assignments; ``faiss.Kmeans.train`` alone is
listed too) against the torch backend in 1 process and in 2 gloo processes
(one thread each, on the same cores): at most 20 iterations (faiss stops
when the objective repeats, torch at a fixed point), 1 initialisation,
objective = sum of squared distances of the L2-normalised points to their
centroids; each timing the median of ``--repeat`` interleaved runs (this
machine's speed drifts by 20%). CUDA: seconds per clustering into
[30000, 10000, 1000], the assignment GEMM's FLOP/s against
``torch.matmul``'s at the same shape (fp32, TF32, bf16). ``--project``
turns measured rates into seconds and bytes per rank for 1.28M x 2048 on
8 GPUs. Prints tables and updates
``benchmarks/results/kmeans.json`` (the section of the mode that ran).
"""
import argparse
import json
import os
import os.path as osp
import socket
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hirl_mm.clustering import hierarchical_kmeans
from hirl_mm.clustering.nearest import NearestCentroid, faiss_available
from hirl_mm.clustering.rows import default_chunk_size, padded_chunks

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OUT = osp.join(ROOT, 'benchmarks', 'results', 'kmeans.json')
LEVELS = [30000, 10000, 1000]


def blobs(n, d, k, seed=0, device='cpu'):
    """Gaussian blobs around k centres (float32, generated in chunks)."""
    g = torch.Generator(device).manual_seed(seed)
    centres = torch.randn(k, d, generator=g, device=device)
    out = torch.empty(n, d, device=device)
    for start in range(0, n, 2**16):
        stop = min(start + 2**16, n)
        labels = torch.randint(
            0, k, (stop - start, ), generator=g, device=device)
        out[start:stop] = centres[labels] + 0.5 * torch.randn(
            stop - start, d, generator=g, device=device)
    return out


def set_threads(num):
    torch.set_num_threads(num)
    if faiss_available():
        import faiss
        faiss.omp_set_num_threads(num)


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def _cpu_rank(rank, port, n, d, k, seed, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    set_threads(1)
    x = blobs(n, d, k, seed)
    ids = torch.arange(rank, n, 2)
    shard = x[ids].contiguous()
    del x
    dist.barrier()
    res, sec = timed(lambda: hierarchical_kmeans(
        shard, [k], ids, n, niter=20, nredo=1, seed=seed))
    if rank == 0:
        with open(osp.join(out_dir, 'two.json'), 'w') as f:
            json.dump(
                dict(
                    seconds=sec,
                    objective=res.stats['objective'][0],
                    iterations=res.stats['iterations'][0]), f)
    dist.destroy_process_group()


def cpu(args):
    n, d, k = args.n, args.dim, args.k
    threads = torch.get_num_threads()
    rows = []
    for seed in args.seeds:
        x = blobs(n, d, k, seed)
        xn = torch.nn.functional.normalize(x, dim=1).numpy()
        kw = dict(niter=20, nredo=1, seed=seed)
        runs = {}  # name -> [(seconds, objective, iterations)], interleaved

        def run(name, fn, result):
            out, sec = timed(fn)
            runs.setdefault(name, []).append((sec, ) + result(out))

        for _ in range(args.repeat):
            run('torch, 1 process', lambda: hierarchical_kmeans(x, [k], **kw),
                lambda r: (r.stats['objective'][0], r.stats['iterations'][0]))
            run('faiss.Kmeans + search',
                lambda: hierarchical_kmeans(x, [k], backend='faiss', **kw),
                lambda r: (r.stats['objective'][0], r.stats['iterations'][0]))
            import faiss
            km = faiss.Kmeans(
                d, k, niter=20, seed=seed, max_points_per_centroid=1000)
            run('faiss.Kmeans.train', lambda: km.train(xn), lambda _:
                (None, len(km.iteration_stats)))
            tmp = tempfile.mkdtemp()
            with socket.socket() as s:
                s.bind(('127.0.0.1', 0))
                port = s.getsockname()[1]
            mp.spawn(_cpu_rank, args=(port, n, d, k, seed, tmp), nprocs=2)
            with open(osp.join(tmp, 'two.json')) as f:
                two = json.load(f)
            runs.setdefault('torch, 2 gloo processes', []).append(
                (two['seconds'], two['objective'], two['iterations']))
        x = xn = None
        # median seconds; objectives and iterations are deterministic
        row = dict(n=n, d=d, k=k, seed=seed, threads=threads)
        for name, vals in runs.items():
            median = float(np.median([v[0] for v in vals]))
            row[name] = (median, ) + vals[0][1:]
        rows.append(row)
    # The assignment kernels at this shape.
    x = torch.nn.functional.normalize(blobs(n, d, k), dim=1)
    cent = x[:k].clone()
    gemm = {}
    for use_faiss in (True, False) if faiss_available() else (False, ):
        nearest = NearestCentroid(cent, use_faiss=use_faiss)
        chunk = default_chunk_size(k, n, x.device)
        _, sec = timed(
            lambda: [nearest(c) for _, c in padded_chunks(x, None, chunk)])
        gemm['faiss' if use_faiss else 'torch'] = 2 * n * d * k / sec / 1e9
    print(f'{threads} threads; N x D = {n} x {d}, K = {k}, at most 20 '
          'iterations (both stop once converged), 1 initialisation')
    print('| seed | method | seconds | vs faiss.Kmeans + search | '
          'iterations | s / iteration | objective | vs faiss |\n'
          '|---|---|---|---|---|---|---|---|')
    for row in rows:
        ref_sec, ref_obj, _ = row['faiss.Kmeans + search']
        for name in ('faiss.Kmeans.train', 'faiss.Kmeans + search',
                     'torch, 1 process', 'torch, 2 gloo processes'):
            sec, obj, its = row[name]
            rel = f'{obj / ref_obj:.4f}' if obj else '-'
            print(f'| {row["seed"]} | {name} | {sec:.2f} | '
                  f'{sec / ref_sec:.2f}x | {its} | {sec / its:.3f} | '
                  f'{obj or "-"} | {rel} |')
    print('assignment GFLOP/s: ' + ', '.join(f'{k_}: {v:.0f}'
                                             for k_, v in gemm.items()))
    return dict(rows=rows, assign_gflops=gemm, load=os.getloadavg())


def matmul_rate(m, d, k, dtype, tf32=False, repeat=10, device='cuda'):
    """FLOP/s of (m x d) @ (d x k) in dtype, best of ``repeat``."""
    a = torch.randn(m, d, device=device, dtype=dtype)
    b = torch.randn(d, k, device=device, dtype=dtype)
    old = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = 'tf32' if tf32 else 'ieee'
    try:
        torch.mm(a, b)
        best = min(timed(lambda: torch.mm(a, b))[1] for _ in range(repeat))
    finally:
        torch.backends.cuda.matmul.fp32_precision = old
    return 2 * m * d * k / best


def cuda(args, device='cuda', levels=LEVELS):
    """``device`` and ``levels`` are for a smoke test on CPU."""
    results = []
    memory = torch.cuda if device == 'cuda' else None
    for size in args.sizes:
        n, d = (int(v) for v in size.split('x'))
        x = torch.nn.functional.normalize(
            blobs(n, d, 1000, device=device), dim=1)
        chunk = default_chunk_size(levels[0], n, x.device)
        rates = dict(
            fp32=matmul_rate(
                chunk, d, levels[0], torch.float32, False, device=device),
            tf32=matmul_rate(
                chunk, d, levels[0], torch.float32, True, device=device),
            bf16=matmul_rate(
                chunk, d, levels[0], torch.bfloat16, device=device))
        for precision in args.precisions:
            if memory:
                memory.reset_peak_memory_stats()
            base = memory.memory_allocated() if memory else 0
            res, sec = timed(lambda: hierarchical_kmeans(
                x,
                levels,
                niter=args.niter,
                nredo=args.nredo,
                precision=precision))
            peak = memory.max_memory_allocated() - base if memory else 0
            # One assignment pass of level 0 (the GEMM plus its argmin).
            nearest = NearestCentroid(
                torch.from_numpy(res.centroids[0]).to(device), precision)
            _, assign = timed(
                lambda: [nearest(c) for _, c in padded_chunks(x, None, chunk)])
            flops = 2 * n * d * levels[0] / assign
            row = dict(
                n=n,
                d=d,
                levels=levels,
                niter=args.niter,
                nredo=args.nredo,
                precision=precision,
                seconds=sec,
                level_seconds=res.stats['seconds'],
                objective=res.stats['objective'],
                nonempty=res.stats['nonempty'],
                iterations=res.stats['iterations'],
                assign_tflops=flops / 1e12,
                matmul_tflops={
                    k: v / 1e12
                    for k, v in rates.items()
                },
                peak_bytes_over_features=peak,
                features_bytes=x.numel() * 4)
            results.append(row)
            print(f'| {n} x {d} | {precision} | {sec:.1f} s | '
                  f'{res.stats["seconds"]} | assign {flops / 1e12:.1f} '
                  f'TFLOP/s = {flops / rates["tf32"]:.0%} of TF32, '
                  f'{flops / rates["bf16"]:.0%} of bf16 matmul '
                  f'(fp32 {rates["fp32"] / 1e12:.0f}, tf32 '
                  f'{rates["tf32"] / 1e12:.0f}, bf16 '
                  f'{rates["bf16"] / 1e12:.0f} TFLOP/s) | peak '
                  f'{peak / 2**30:.2f} GiB over the features |')
        x = None
    return results


def project(args, measured):
    """1.28M x 2048 into [30000, 10000, 1000] on 8 GPUs, 20 x 5."""
    n, d, world, niter, nredo = 1281167, 2048, 8, 20, 5
    passes = niter * nredo + 1  # Lloyd steps + the final assignment
    rates = {
        name: float(value)
        for name, value in (r.split('=') for r in args.rate)
    }
    for row in sorted(measured or [], key=lambda r: -r['d']):
        # The widest features measured are the closest to 2048.
        rates.setdefault(
            f'measured {row["precision"]} ({row["n"]} x {row["d"]})',
            row['assign_tflops'])
    if not rates:
        raise SystemExit('No rate: run --device cuda first or pass --rate.')
    chunk = default_chunk_size(LEVELS[0], n, torch.device('cuda'))
    k0 = LEVELS[0]
    shard = -(-n // world)
    flop0 = 2 * shard * d * k0 * passes  # per rank
    flop_up = sum(2 * a * d * b * passes
                  for a, b in zip(LEVELS, LEVELS[1:]))  # on every rank
    allreduce = (k0 * (d + 1) + 1) * 8  # int64 sums, counts, objective
    # Ring all-reduce: 2 (W - 1) / W of the buffer through each link.
    allreduce_s = niter * nredo * 2 * (world - 1) / world * allreduce / (
        args.allreduce_gbps * 1e9)
    mem = dict(
        features=shard * d * 4,
        scores=chunk * k0 * 4,
        chunk=chunk * d * (4 + 8),  # normalised fp32 + fixed-point int64
        # the all-reduced buffer and the restart's own kept sums
        sums=allreduce + k0 * d * 8,
        centroids=3 * k0 * d * 4 + k0 * d * 8,  # 3 fp32 copies, fp64 temp
        # id table, gathered ids, (label, dist), the last step's labels
        ids=n * 8 * 2 + n * 16 + shard * 8)
    print(f'ImageNet projection: {n} x {d} into {LEVELS}, {world} GPUs, '
          f'niter {niter} x nredo {nredo}; all-reduce {allreduce / 1e9:.2f} '
          f'GB per iteration, {allreduce_s:.1f} s in all at an assumed '
          f'{args.allreduce_gbps:.0f} GB/s')
    print('| assignment rate | level 0 s | upper levels s | total s | '
          'bytes per rank |\n|---|---|---|---|---|')
    rows = []
    for name, tflops in rates.items():
        t0, t_up = flop0 / tflops / 1e12, flop_up / tflops / 1e12
        rows.append(
            dict(
                rate=name,
                tflops=tflops,
                level0_s=t0,
                upper_s=t_up,
                allreduce_s=allreduce_s,
                allreduce_gbps=args.allreduce_gbps,
                allreduce_bytes=allreduce,
                bytes_per_rank=mem))
        print(f'| {name}: {tflops:.1f} TFLOP/s | {t0:.1f} | {t_up:.1f} | '
              f'{t0 + t_up + allreduce_s:.1f} | '
              f'{sum(mem.values()) / 2**30:.2f} GiB '
              f'({", ".join(f"{k} {v / 2**30:.2f}" for k, v in mem.items())}'
              ') |')
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--project', action='store_true')
    parser.add_argument('--n', type=int, default=100000)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--k', type=int, default=1000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument(
        '--repeat',
        type=int,
        default=3,
        help='CPU: timings per seed, interleaved; the median is reported')
    parser.add_argument(
        '--sizes', nargs='+', default=['1280000x128', '256000x2048'])
    parser.add_argument(
        '--precisions',
        nargs='+',
        default=['fp32', 'tf32'],
        choices=['fp32', 'tf32', 'bf16'])
    parser.add_argument('--niter', type=int, default=20)
    parser.add_argument('--nredo', type=int, default=1)
    parser.add_argument(
        '--rate',
        nargs='+',
        default=[],
        metavar='NAME=TFLOPS',
        help='assignment rates for --project, e.g. h100-tf32=300')
    parser.add_argument(
        '--allreduce-gbps',
        type=float,
        default=100,
        help='assumed all-reduce bus bandwidth for --project (NVLink: '
        'hundreds of GB/s, InfiniBand: tens)')
    parser.add_argument('--out', default=OUT)
    args = parser.parse_args()
    results = {}
    if osp.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
        if not isinstance(results, dict):
            results = {}
    if args.project:
        results['projection'] = project(args, results.get('cuda'))
    elif args.device == 'cuda':
        results['cuda'] = cuda(args)
    else:
        results['cpu'] = cpu(args)
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
