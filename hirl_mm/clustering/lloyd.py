"""Flat k-means of one level, over shards of points held by the ranks.

DeepCluster-v2's distributed Lloyd iteration (facebookresearch/swav,
``main_deepclusterv2.py``, ``cluster_memory``): every rank assigns its own
points and the ranks all-reduce per-cluster sums and counts; points never
move. The rest follows faiss' ``Clustering::train`` (facebookresearch/faiss,
``faiss/Clustering.cpp``): a seeded training subsample above
``max_points_per_centroid`` points per centroid, initial centroids drawn
from it (:mod:`.init`), empty clusters re-seeded by splitting a cluster
drawn with probability growing with its size, ``nredo`` restarts keeping
the lowest objective of the last iteration.

W ranks give bitwise the same result as one: the sums are exact integers
(:mod:`.fixed_point`) and every point goes through GEMMs of one shape
(:mod:`.rows`).
"""
from typing import Callable, NamedTuple, Optional, Tuple

import torch

from .fixed_point import OBJ_SCALE, SUM_SCALE, FixedPointSums, weight_scale
from .init import initial_centroids
from .nearest import NearestCentroid
from .rows import padded_chunks, sum_over_ranks, unit_rows

_SPLIT_EPS = 1 / 1024  # faiss' EPS of split_clusters


class LevelResult(NamedTuple):
    """k-means of one level; ``labels`` / ``distances`` of the local rows."""
    centroids: torch.Tensor  # K x D, the means (not normalised)
    labels: torch.Tensor  # n, int64
    distances: torch.Tensor  # n, squared distance to the centroid
    objective: float  # sum of squared distances over all ranks' points
    num_nonempty: int  # clusters with at least one point
    iterations: int = 0  # Lloyd iterations run, all restarts together


def lloyd_kmeans(points: torch.Tensor,
                 ids: torch.Tensor,
                 num_points: int,
                 k: int,
                 *,
                 niter: int,
                 nredo: int,
                 max_points_per_centroid: int,
                 seed: int,
                 init: str,
                 chunk_size: int,
                 precision: str,
                 distributed: bool,
                 weights: Optional[torch.Tensor] = None,
                 log: Optional[Callable[[str], None]] = None) -> LevelResult:
    """k-means of the points of all ranks into ``k`` clusters.

    A collective when ``distributed``: every rank passes its rows
    ``points`` (n, D) with their global ``ids`` (n, ) in [0, num_points)
    (CPU int64); the ids of all ranks together cover [0, num_points) once.
    ``weights`` (n, ), one process only: each point counts that many times
    in the centroids and the objective (faiss' ``train(x, weights)``),
    summed exactly in fixed point (:func:`.fixed_point.weight_scale`), so
    the result does not depend on the device's summation order. ``log``
    receives a line per iteration.

    Returns:
        LevelResult: the best restart's centroids (the same on every rank)
        and the labels and squared distances of the local rows.
    """
    if weights is not None and distributed:
        raise ValueError('weights are for one process (the upper levels).')
    local_row = torch.full((num_points, ), -1, dtype=torch.int64)
    local_row[ids] = torch.arange(len(ids))
    train_ids, rows = _training_sample(local_row, k * max_points_per_centroid,
                                       seed, points.device)
    num_train = num_points if train_ids is None else len(train_ids)
    # rows already L2-normalised (the hook's shards) are used in place
    normalize = torch.logical_not(unit_rows(points)).int().view(1)
    normalize = bool(sum_over_ranks(normalize, distributed))
    scale = None if weights is None else weight_scale(weights)

    def step(centroids, fixed):
        if weights is None:
            return _lloyd_step(points, rows, centroids, chunk_size, precision,
                               normalize, distributed, fixed)
        return _weighted_step(points, rows, weights, centroids, chunk_size,
                              precision, normalize, scale)

    best, best_obj, iterations = None, float('inf'), 0
    for redo in range(nredo if num_train > k else 1):
        generator = torch.Generator().manual_seed(seed + 1 + redo * 15486557)
        centroids = initial_centroids(points, local_row, train_ids, num_train,
                                      k, init, generator, redo, seed,
                                      chunk_size, distributed)
        if num_train == k:  # faiss: the points are the centroids
            best = centroids
            break
        centroids, obj, iters = _restart(step, centroids, niter, generator,
                                         redo, log)
        iterations += iters
        if obj < best_obj:
            best, best_obj = centroids, obj
    return _assign(points, ids, best, chunk_size, precision, normalize,
                   distributed, iterations)


def _training_sample(
    local_row: torch.Tensor, num_train: int, seed: int, device: torch.device
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """faiss' training subsample: ``num_train`` global ids drawn with
    ``seed`` and the local rows among them, sorted. ``(None, None)`` when
    every point trains."""
    num_points = len(local_row)
    if num_points <= num_train:
        return None, None
    train_ids = torch.randperm(
        num_points, generator=torch.Generator().manual_seed(seed))
    train_ids = train_ids[:num_train]
    rows = local_row[train_ids]
    return train_ids, rows[rows >= 0].sort().values.to(device)


def _restart(step: Callable, centroids: torch.Tensor, niter: int,
             generator: torch.Generator, redo: int,
             log: Optional[Callable[[str], None]]):
    """Lloyd iterations of one restart from ``centroids``: at most
    ``niter``, fewer at a fixed point. Returns the centroids, the objective
    of the last iteration and the number of iterations run."""
    fixed = FixedPointSums(*centroids.shape, centroids.device)
    for it in range(niter):
        new, counts, obj = step(centroids, fixed)
        nsplit = _split_empty_clusters(new, counts, generator)
        converged = _fixed_point(new, centroids, nsplit)
        centroids = new
        if log is not None:
            log(f'redo {redo} iteration {it}: objective {obj:.6g}, '
                f'{nsplit} empty clusters split' +
                (', converged' if converged else ''))
        if converged:
            break
    return centroids, obj, it + 1


def _lloyd_step(points,
                rows,
                centroids,
                chunk_size,
                precision,
                normalize,
                distributed,
                fixed: Optional[FixedPointSums] = None):
    """Assign the (training) rows, then all-reduce the fixed-point sums,
    the counts and the objective in one collective. ``fixed``: the sums of
    the previous step of this restart (updated in place); None: from
    scratch."""
    k, dim = centroids.shape
    nearest = NearestCentroid(centroids, precision)
    if fixed is None:
        fixed = FixedPointSums(k, dim, points.device)
    all_labels, all_dists = [], []
    start = 0
    for m, chunk in padded_chunks(points, rows, chunk_size, normalize):
        dist_, labels = nearest(chunk)
        labels = labels[:m].to(points.device)
        fixed.assign(chunk[:m], labels, start)
        start += m
        all_labels.append(labels)
        all_dists.append(dist_[:m].to(points.device))
    labels = torch.cat(all_labels + [centroids.new_zeros(0).long()])
    dists = torch.cat(all_dists + [centroids.new_zeros(0)])
    # [sums | counts | objective], reduced in one go
    packed = torch.cat([
        fixed.finish(labels).flatten(),
        torch.bincount(labels, minlength=k),
        dists.mul(OBJ_SCALE).long().sum().view(1)
    ])
    sum_over_ranks(packed, distributed)
    counts = packed[k * dim:-1]
    new = packed[:k * dim].view(k, dim).double().div_(SUM_SCALE).div_(
        counts.clamp_min(1)[:, None]).float()
    return new, counts, float(packed[-1]) / OBJ_SCALE


def _weighted_step(points, rows, weights, centroids, chunk_size, precision,
                   normalize, scale):
    """A Lloyd step of one process whose points carry weights (n, ):
    weighted sums and counts, weighted objective, as integers (``scale``,
    :func:`.fixed_point.weight_scale`) summed exactly in float64:
    deterministic on a GPU too, where float64 ``index_add_`` of arbitrary
    values is not."""
    k, dim = centroids.shape
    nearest = NearestCentroid(centroids, precision)
    sums = points.new_zeros((k, dim), dtype=torch.float64)
    counts = points.new_zeros(k, dtype=torch.float64)
    obj = points.new_zeros((), dtype=torch.float64)
    start = 0
    for m, chunk in padded_chunks(points, rows, chunk_size, normalize):
        dist_, labels = nearest(chunk)
        labels = labels[:m].to(points.device)
        idx = slice(start, start + m) if rows is None else \
            rows[start:start + m]
        w = weights[idx].to(points.device, torch.float64) * scale
        terms = chunk[:m].double().mul_(w[:, None])  # m x D
        sums.index_add_(0, labels, terms.round_())
        counts.index_add_(0, labels, w.round())
        obj += (dist_[:m].to(w) * (w / 4)).round_().sum()
        start += m
    new = sums.div_(counts.clamp_min(1)[:, None]).float()
    return new, counts.div_(scale), float(obj) * 4 / scale


def _split_empty_clusters(centroids: torch.Tensor, counts: torch.Tensor,
                          generator: torch.Generator) -> int:
    """faiss' ``split_clusters``: each empty cluster takes a copy of a
    cluster drawn with probability ~ (size - 1), and the two are pushed apart
    by a symmetric relative perturbation of +-1/1024; the two halves of a
    split may be drawn again. The draws use the all-reduced counts and a
    generator seeded alike, so every rank splits alike.

    The empty clusters are taken in order, as faiss does, but each draw
    costs O(log K) (a Fenwick tree of the weights, in Python floats) and
    the centroids change in one gather at the end: a changed cluster is a
    copy of its root (an original cluster) times ``(1 + eps sign)^p
    (1 - eps sign)^q``. O(E log K + M D) for E empty and M changed
    clusters, rather than E draws of O(K) each, so that collapsed features
    (almost every cluster empty) stay cheap.
    """
    counts = counts.double().cpu()
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if not empty:
        return 0
    sizes = counts.tolist()
    k = len(sizes)
    weights = [max(size - 1.0, 0.0) for size in sizes]
    tree = [0.0] + weights  # Fenwick tree, 1-based
    for i in range(1, k + 1):
        parent = i + (i & -i)
        if parent <= k:
            tree[parent] += tree[i]
    top = 1 << (k.bit_length() - 1)

    def add(i, delta):
        i += 1
        while i <= k:
            tree[i] += delta
            i += i & -i

    total = sum(weights)
    draws = torch.rand(
        len(empty), generator=generator, dtype=torch.float64).tolist()
    root, plus, minus = {}, {}, {}  # of the clusters that change
    nsplit = 0
    for ci, u in zip(empty, draws):
        # first cluster whose cumulative weight exceeds u * total
        target, cj, step = u * total, 0, top
        while step:
            if cj + step <= k and tree[cj + step] <= target:
                cj += step
                target -= tree[cj]
            step >>= 1
        if cj >= k or weights[cj] <= 0:  # rounding at a boundary
            positive = [c for c in range(k) if weights[c] > 0]
            if not positive:  # no cluster of two or more points is left
                break
            cj = min(positive, key=lambda c, cj=cj: abs(c - cj))
        nsplit += 1
        root[ci] = root.setdefault(cj, cj)
        plus[ci] = plus.setdefault(cj, 0) + 1
        minus[ci] = minus.get(cj, 0)
        minus[cj] = minus[ci] + 1
        sizes[ci] = sizes[cj] / 2
        sizes[cj] -= sizes[ci]
        for c in (ci, cj):
            weight = max(sizes[c] - 1.0, 0.0)
            add(c, weight - weights[c])
            total += weight - weights[c]
            weights[c] = weight
    if not nsplit:
        return 0
    changed = list(root)
    device = centroids.device
    src = torch.tensor([root[c] for c in changed], device=device)
    up, down = 1 + _SPLIT_EPS, 1 - _SPLIT_EPS
    p = torch.tensor([plus[c] for c in changed], dtype=torch.float64)
    q = torch.tensor([minus[c] for c in changed], dtype=torch.float64)
    moved = centroids[src]  # M x D, a copy of the roots
    factors = torch.stack([up**p * down**q, down**p * up**q], 1).to(moved)
    half = moved.shape[1] // 2
    # even / odd coordinates as the M x half x 2 view: no M x D factors
    moved[:, :2 * half].unflatten(1, (half, 2)).mul_(factors[:, None])
    if moved.shape[1] % 2:
        moved[:, -1] *= factors[:, 0]
    centroids.index_copy_(0, torch.tensor(changed, device=device), moved)
    return nsplit


def _fixed_point(new: torch.Tensor, old: torch.Tensor, nsplit: int) -> bool:
    """Whether a Lloyd step reached a fixed point: the means of its
    assignment are the centroids it was made with (bitwise; the sums are
    exact), so every later iteration would repeat it. Stopping there changes
    no result, and every rank decides alike (all-reduced centroids)."""
    return nsplit == 0 and torch.equal(new, old)


def _assign(points, ids, centroids, chunk_size, precision, normalize,
            distributed, iterations) -> LevelResult:
    """Assign every local row to ``centroids``; the objective and the
    non-empty clusters of all ranks."""
    k = len(centroids)
    device = points.device
    labels, dists = [], []
    nearest = NearestCentroid(centroids, precision)
    for m, chunk in padded_chunks(points, None, chunk_size, normalize):
        dist_, label = nearest(chunk)
        dists.append(dist_[:m].to(device))
        labels.append(label[:m].to(device))
    labels = torch.cat(labels + [ids.new_zeros(0).to(device)])
    dists = torch.cat(dists + [centroids.new_zeros(0)])
    totals = torch.cat([
        torch.bincount(labels, minlength=k),
        (dists * OBJ_SCALE).long().sum().view(1)
    ])
    totals = sum_over_ranks(totals, distributed)
    return LevelResult(centroids, labels, dists,
                       float(totals[-1]) / OBJ_SCALE,
                       int((totals[:-1] > 0).sum()), iterations)
