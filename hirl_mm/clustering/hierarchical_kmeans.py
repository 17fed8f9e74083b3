import logging
import time
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import all_gather, get_rank, get_world_size
from mmengine.logging import print_log

from .lloyd import (PRECISIONS, default_chunk_size, lloyd_kmeans,
                    normalized_rows)


class HierarchicalClustering(NamedTuple):
    """The result of :func:`hierarchical_kmeans`.

    Attributes:
        assignments (np.ndarray): Level-0 cluster of every point, shape (N, ).
        parents (list[np.ndarray]): ``parents[l]`` maps each cluster of level
            ``l`` to its cluster at level ``l + 1``, shape (M_l, ). Has
            ``L - 1`` entries.
        centroids (list[np.ndarray]): L2-normalised centroids per level,
            shape (M_l, D).
        distances (list[np.ndarray]): ``distances[l]`` is the squared
            distance of every point clustered at level ``l`` (images at level
            0, level ``l - 1`` centroids above) to its centroid.
        stats (dict, optional): Per level, finest first: ``objective`` (sum
            of ``distances[l]``), ``nonempty`` (clusters with a member) and
            ``seconds`` (wall time of the level). None for a clustering made
            by hand.
    """
    assignments: np.ndarray
    parents: List[np.ndarray]
    centroids: List[np.ndarray]
    distances: List[np.ndarray]
    stats: Optional[dict] = None

    def concentrations(self) -> List[np.ndarray]:
        """Per level, :func:`cluster_concentration` of its clusters."""
        members = [self.assignments] + list(self.parents)
        return [
            cluster_concentration(dist, assign,
                                  len(cent)) for dist, assign, cent in zip(
                                      self.distances, members, self.centroids)
        ]

    def paths(self) -> np.ndarray:
        """Root-to-leaf cluster ids of every point, shape (N, L)."""
        ids = [self.assignments]
        for parent in self.parents:
            ids.append(parent[ids[-1]])
        return np.stack(ids, axis=1)


def check_num_clusters(num_points: int,
                       num_clusters: Sequence[int],
                       key: str = 'num_clusters') -> None:
    """Raise a ``ValueError`` naming ``key`` for an impossible hierarchy."""
    num_clusters = list(num_clusters)
    if len(num_clusters) == 0 or min(num_clusters) < 1:
        raise ValueError(f'`{key}` must be a non-empty list of positive '
                         f'cluster counts, got {num_clusters}.')
    if num_points < num_clusters[0]:
        raise ValueError(
            f'Cannot cluster {num_points} points into {num_clusters[0]} '
            f'level-0 clusters: lower `{key}[0]` (={num_clusters[0]}) to at '
            f'most the number of training images ({num_points}).')
    for lvl in range(1, len(num_clusters)):
        if num_clusters[lvl] >= num_clusters[lvl - 1]:
            raise ValueError(
                f'`{key}` must strictly decrease from the finest to the '
                f'coarsest level, got {num_clusters} ({key}[{lvl}]='
                f'{num_clusters[lvl]} >= {key}[{lvl - 1}]='
                f'{num_clusters[lvl - 1]}).')


def kmeans_plusplus(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Seeded k-means++ initial centroids (D^2 sampling), shape (k, D)."""
    rng = np.random.RandomState(seed)
    centroids = np.empty((k, points.shape[1]), dtype=np.float32)
    centroids[0] = points[rng.randint(len(points))]
    dist = ((points - centroids[0])**2).sum(1)
    for i in range(1, k):
        prob = dist / dist.sum() if dist.sum() > 0 else None
        centroids[i] = points[rng.choice(len(points), p=prob)]
        dist = np.minimum(dist, ((points - centroids[i])**2).sum(1))
    return centroids


def _faiss_kmeans(points, k, init, nredo, seed, weights=None, **kwargs):
    """faiss k-means; with k-means++ init every restart is seeded anew."""
    import faiss
    if init == 'random':
        kmeans = faiss.Kmeans(
            points.shape[1], k, nredo=nredo, seed=seed, **kwargs)
        kmeans.train(points, weights=weights)
        return kmeans
    best, iterations = None, 0
    for redo in range(nredo):
        kmeans = faiss.Kmeans(points.shape[1], k, seed=seed, **kwargs)
        kmeans.train(
            points,
            weights=weights,
            init_centroids=kmeans_plusplus(points, k, seed * 1000 + redo))
        iterations += len(kmeans.iteration_stats)
        if best is None or kmeans.obj[-1] < best.obj[-1]:
            best = kmeans
    best.iterations = iterations  # all restarts, as faiss' own nredo
    return best


def _faiss_level(points,
                 k,
                 seed,
                 niter,
                 nredo,
                 init,
                 max_points_per_centroid,
                 min_points_per_centroid,
                 verbose,
                 weights=None):
    """One level with faiss (GPU when faiss has one): labels, distances,
    centroids, objective, non-empty clusters, Lloyd iterations run (faiss
    stops when the objective repeats)."""
    import faiss
    gpu = hasattr(faiss, 'get_num_gpus') and faiss.get_num_gpus() > 0
    kmeans = _faiss_kmeans(
        points,
        k,
        init=init,
        nredo=nredo,
        seed=seed,
        niter=niter,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=min_points_per_centroid,
        gpu=gpu,
        verbose=verbose,
        weights=weights)
    dist, labels = kmeans.index.search(points, 1)
    labels = labels[:, 0].astype(np.int64)
    return (labels, dist[:, 0], kmeans.centroids, float(dist.sum(dtype=float)),
            len(np.unique(labels)),
            getattr(kmeans, 'iterations', len(kmeans.iteration_stats)))


def _check_args(backend, init, niter, nredo, max_points_per_centroid,
                precision, world_size):
    if backend not in ('torch', 'faiss'):
        raise ValueError(
            f"backend must be 'torch' or 'faiss', got {backend!r}.")
    if init not in ('random', 'kmeans++'):
        raise ValueError(f"init must be 'random' or 'kmeans++', got {init!r}.")
    if min(niter, nredo, max_points_per_centroid) < 1:
        raise ValueError(
            'niter, nredo and max_points_per_centroid must be positive, got '
            f'{niter}, {nredo} and {max_points_per_centroid}.')
    if precision not in PRECISIONS:
        raise ValueError(
            f'precision must be one of {PRECISIONS}, got {precision!r}.')
    if world_size > 1 and backend == 'faiss':
        raise ValueError(
            f"backend='faiss' clusters in one process, but {world_size} "
            "ranks called hierarchical_kmeans: use backend='torch', the "
            'distributed k-means, or distributed=False on a process that '
            'holds all the points.')
    if world_size > 1 and init == 'kmeans++':
        raise ValueError(
            f"init='kmeans++' needs all points in one process, but "
            f'{world_size} ranks called hierarchical_kmeans: use '
            "init='random', or distributed=False on a process that holds "
            'all the points.')


def _all_finite(features: torch.Tensor) -> bool:
    """No NaN or Inf, checked about 2^20 values at a time: a sum with
    ``dtype=float64`` would cast a float64 copy of all the features (2 N D
    floats, measured), a whole-tensor ``isfinite`` holds N D temporaries."""
    if features.ndim != 2 or not features.numel():
        return bool(torch.isfinite(features).all())
    finite = torch.ones((), dtype=torch.bool, device=features.device)
    rows = max(1, 2**20 // features.shape[1])
    for i in range(0, len(features), rows):  # one sync at the end
        finite &= torch.isfinite(features[i:i + rows]).all()
    return bool(finite)


def _shard_ids(features, sample_idx, num_samples, world_size):
    """Checks the shards of all ranks alike (a rank alone raising would
    leave the others waiting in a collective); returns the global ids of
    the local rows, those of all ranks in rank order, N and every rank's
    number of rows."""
    if sample_idx is None:
        if world_size > 1:
            raise ValueError(
                f'sample_idx is required with {world_size} ranks: the '
                'global id in [0, num_samples) of each row of features.')
        sample_idx = torch.arange(len(features))
    sample_idx = torch.as_tensor(sample_idx).cpu()
    ok_ids = sample_idx.ndim == 1 and not sample_idx.is_floating_point() \
        and len(sample_idx) == (len(features) if features.ndim else 0)
    info = torch.tensor([
        features.ndim, features.shape[0] if features.ndim else 0,
        features.shape[-1] if features.ndim == 2 else -1,
        int(_all_finite(features)),
        int(ok_ids),
        sample_idx.numel(),
        int(sample_idx.min()) if ok_ids and sample_idx.numel() else 0,
        int(sample_idx.max()) if ok_ids and sample_idx.numel() else -1
    ])
    infos = torch.stack(all_gather(info)) if world_size > 1 else info[None]
    for r, (ndim, n, dim, finite, ok, num_ids, _,
            _) in enumerate(infos.tolist()):
        where = f' on rank {r}' if world_size > 1 else ''
        if ndim != 2:
            raise ValueError(f'features must be a 2-D (num_points, dim) '
                             f'array, got {ndim} dimension(s){where}.')
        if dim != infos[0, 2]:
            raise ValueError(f'features have {dim} dimensions{where} but '
                             f'{int(infos[0, 2])} on rank 0.')
        if not finite:
            raise ValueError(f'features contain NaN or Inf{where}.')
        if not ok:
            raise ValueError(
                f'sample_idx must be a 1-D integer array of one global id '
                f'per row of features, got {num_ids} ids for {n} '
                f'rows{where}.')
    counts = infos[:, 1].tolist()
    total = sum(counts)
    num_samples = total if num_samples is None else int(num_samples)
    if total != num_samples:
        raise ValueError(
            f'The ranks hold {total} rows of features but num_samples is '
            f'{num_samples}: every id in [0, num_samples) must be held '
            'once.')
    lo, hi = int(infos[:, 6].min()), int(infos[:, 7].max())
    if lo < 0 or hi >= num_samples:
        raise ValueError(f'sample_idx must lie in [0, {num_samples}), got '
                         f'ids from {lo} to {hi}.')
    all_ids = _all_gather_rows(sample_idx.long(), counts, world_size)
    times = torch.bincount(all_ids, minlength=num_samples)
    if int(times.max()) > 1:
        dup = int(times.argmax())
        raise ValueError(
            f'sample_idx holds id {dup} {int(times[dup])} times (across '
            'ranks): every id in [0, num_samples) must be held once.')
    return sample_idx.long(), all_ids, num_samples, counts


def _all_gather_rows(tensor, counts, world_size):
    """Rows of all ranks in rank order; shards may be uneven or empty."""
    if world_size == 1:
        return tensor
    padded = tensor.new_zeros((max(counts), ) + tensor.shape[1:])
    padded[:len(tensor)] = tensor
    return torch.cat([part[:n] for part, n in zip(all_gather(padded), counts)])


@torch.no_grad()
def hierarchical_kmeans(
        features: Union[torch.Tensor, np.ndarray],
        num_clusters: Sequence[int],
        sample_idx: Union[torch.Tensor, np.ndarray, None] = None,
        num_samples: Optional[int] = None,
        *,
        niter: int = 20,
        nredo: int = 5,
        max_points_per_centroid: int = 1000,
        seed: int = 0,
        init: str = 'random',
        backend: str = 'torch',
        chunk_size: Optional[int] = None,
        verbose: bool = False,
        min_points_per_centroid: int = 10,
        precision: str = 'fp32',
        distributed: Optional[bool] = None,
        weighted_upper_levels: bool = False) -> HierarchicalClustering:
    """Cluster L2-normalised features into a tree of prototypes.

    Level 0 clusters the points into ``num_clusters[0]`` clusters; level
    ``l`` clusters the L2-normalised centroids of level ``l - 1``. The
    defaults are the HIRL reference settings (hirl-team/HIRL,
    ``hirl/utils/clustering.py``, ``run_hkmeans``: faiss, niter 20, nredo 5,
    1000 points per centroid at most); level ``l`` uses seed ``seed + l``,
    so the result is deterministic for a fixed seed.

    With ``backend='torch'`` and several ranks this is a collective: each
    rank passes its own shard of the points and gets the whole result; the
    features stay where they are (the k-means runs on ``features.device``),
    ranks exchange per-cluster sums and counts (K x D) per iteration and,
    once, the ids, labels and distances of the points (O(N)). One rank or
    W ranks on the same points give the same result. The upper levels
    (centroids only) are computed alike on every rank.

    Args:
        features (Tensor | np.ndarray): This rank's points, (n, D). Rows
            already of unit norm (the hook's shards) are read in place,
            others L2-normalised chunk by chunk: never a copy of the
            shard, never written to.
        num_clusters (Sequence[int]): Clusters per level, finest first,
            strictly decreasing.
        sample_idx (Tensor | np.ndarray, optional): Global id in
            [0, num_samples) of each row, (n, ); the ranks' ids together
            hold every id once. Defaults to ``arange(n)`` (one rank only).
        num_samples (int, optional): N. Defaults to the total of the
            shards' sizes.
        niter (int): Lloyd iterations at most. A restart stops early at a
            fixed point (its new centroids equal the old bitwise, so every
            later iteration would repeat it): no result changes. faiss stops
            when the objective repeats. ``stats['iterations']`` counts the
            iterations run. Defaults to 20.
        nredo (int): Restarts; the lowest objective is kept. Defaults to 5.
        max_points_per_centroid (int): Above ``K x`` this many points, train
            on a seeded random subsample of that size (as faiss), then
            assign all points. Defaults to 1000.
        seed (int): Base seed. Defaults to 0.
        init (str): 'random' (faiss' initialisation: K distinct random
            training points) or 'kmeans++' (seeded D^2 sampling, O(N K D),
            one process only). Defaults to 'random'.
        backend (str): 'torch' (this distributed k-means) or 'faiss'
            (``faiss.Kmeans``, on a GPU when faiss has one; one process
            only). Defaults to 'torch'.
        chunk_size (int, optional): Points per assignment GEMM. Defaults to
            :func:`default_chunk_size` (4096 on CPU, 8192 on a GPU, less for
            many clusters, wide points or few points).
        verbose (bool): Log every iteration on rank 0. Defaults to False.
        min_points_per_centroid (int): faiss warns below this many points
            per centroid (faiss backend). Defaults to 10.
        precision (str): Assignment GEMM of the torch backend: 'fp32',
            'tf32' or 'bf16' (CUDA only). Distances are recomputed in fp32
            to the chosen centroid. Defaults to 'fp32'.
        distributed (bool, optional): False clusters this process' points
            alone, with no collective, whatever the world size (e.g. in a
            metric computed on rank 0 only). Defaults to None: a collective
            whenever the world size is above 1.
        weighted_upper_levels (bool): Cluster each upper level's points (the
            centroids below) weighted by the number of images under them
            (faiss' ``Kmeans.train(x, weights)``): a few centroids of
            outlying images then cannot claim most of a level. The reference
            weights them equally (docs/results.md, the diagnosis). Defaults
            to False.

    Returns:
        HierarchicalClustering: assignments of all N points in id order,
        parent maps, centroids, distances and per-level ``stats``, on every
        rank.
    """
    world_size = 1 if distributed is False else get_world_size()
    _check_args(backend, init, niter, nredo, max_points_per_centroid,
                precision, world_size)
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    if not isinstance(features, torch.Tensor):
        raise TypeError('features must be a torch.Tensor or np.ndarray, got '
                        f'{type(features).__name__}.')
    if precision != 'fp32' and features.device.type != 'cuda':
        raise ValueError(f"precision={precision!r} needs CUDA features, got "
                         f'features on {features.device}.')
    ids, all_ids, num_samples, counts = _shard_ids(features, sample_idx,
                                                   num_samples, world_size)
    check_num_clusters(num_samples, num_clusters)
    if num_samples < num_clusters[0] * min_points_per_centroid:
        print_log(
            f'k-means of {num_samples} points into {num_clusters[0]} '
            f'clusters: fewer than {min_points_per_centroid} points per '
            'centroid.',
            logger='current',
            level=logging.DEBUG)

    def log(msg):
        if verbose and get_rank() == 0:
            print_log(f'k-means {msg}', logger='current')

    parents, centroids, distances = [], [], []
    stats = dict(objective=[], nonempty=[], seconds=[], iterations=[])
    points, weights = features, None
    for lvl, k in enumerate(num_clusters):
        start = time.perf_counter()
        if backend == 'faiss':
            pts = normalized_rows(points.cpu(), None, len(points) or 1)
            labels, dist, cent, obj, nonempty, iters = _faiss_level(
                pts.numpy(), int(k), seed + lvl, niter, nredo, init,
                max_points_per_centroid, min_points_per_centroid, verbose, None
                if weights is None else weights.numpy().astype(np.float32))
        else:
            level_ids = ids if lvl == 0 else torch.arange(len(points))
            num_points = num_samples if lvl == 0 else len(points)
            res = lloyd_kmeans(
                points,
                level_ids,
                num_points,
                int(k),
                niter=niter,
                nredo=nredo,
                max_points_per_centroid=max_points_per_centroid,
                seed=seed + lvl,
                init=init,
                chunk_size=chunk_size or default_chunk_size(
                    int(k), num_points, points.device, points.shape[1]),
                precision=precision,
                distributed=lvl == 0 and world_size > 1,
                weights=weights,
                log=lambda msg, lvl=lvl: log(f'level {lvl}: {msg}'))
            labels, dist, cent = res.labels, res.distances, res.centroids
            obj, nonempty, iters = (res.objective, res.num_nonempty,
                                    res.iterations)
        labels, dist = torch.as_tensor(labels), torch.as_tensor(dist)
        if lvl == 0:
            # One all-gather of (label, distance) pairs of 8 bytes: the
            # int32 label and the float32 distance's bits (both exact).
            pairs = _all_gather_rows(
                torch.stack([
                    labels.int(),
                    dist.float().contiguous().view(torch.int32)
                ], 1).cpu(), counts, world_size)
            assignments = np.empty(num_samples, dtype=np.int64)
            assignments[all_ids.numpy()] = pairs[:, 0].numpy()
            dist = np.empty(num_samples, dtype=np.float32)
            dist[all_ids.numpy()] = pairs[:, 1].numpy().view(np.float32)
        else:
            parents.append(labels.cpu().numpy().astype(np.int64))
            dist = dist.cpu().numpy().astype(np.float32)
        distances.append(dist)
        if weighted_upper_levels:  # images under each cluster of this level
            weights = torch.bincount(
                torch.as_tensor(assignments if lvl == 0 else parents[-1]),
                weights=None if weights is None else weights,
                minlength=int(k)).double()
        points = F.normalize(torch.as_tensor(cent).to(features.device), dim=1)
        centroids.append(points.cpu().numpy())
        stats['objective'].append(obj)
        stats['nonempty'].append(nonempty)
        stats['iterations'].append(iters)
        stats['seconds'].append(time.perf_counter() - start)
        log(f'level {lvl}: {len(dist)} points into {k} clusters, objective '
            f'{obj:.6g}, {nonempty} non-empty, '
            f'{stats["seconds"][-1]:.1f} s')
    return HierarchicalClustering(assignments, parents, centroids, distances,
                                  stats)


def cluster_concentration(distances: np.ndarray,
                          assignments: np.ndarray,
                          num_clusters: int,
                          percentiles: Sequence[float] = (10, 90)):
    """HCSC / PCL concentration of each cluster, normalised to mean 1.

    ``phi_c = mean_{x in c} ||x - c|| / log(n_c + 10)``, clipped to the given
    percentiles of all phi and divided by their mean (multiply by the
    contrastive temperature to get the reference's scale). A cluster with at
    most one member gets the largest phi of the others. A cluster of
    identical points has phi 0 (the model floors temperatures at 1e-3);
    when every cluster has, all concentrations are 1.

    Args:
        distances (np.ndarray): Squared distance of each point to its
            centroid, (N, ).
        assignments (np.ndarray): Cluster of each point, (N, ).
        num_clusters (int): M.

    Returns:
        np.ndarray: (M, ) concentrations.
    """
    counts = np.bincount(assignments, minlength=num_clusters)
    dist_sum = np.bincount(
        assignments,
        weights=np.sqrt(np.maximum(distances, 0)),
        minlength=num_clusters)
    phi = dist_sum / np.maximum(counts, 1) / np.log(counts + 10)
    many = counts > 1
    if many.any():
        phi[~many] = phi[many].max()
    else:
        phi[:] = 1.0
    lo, hi = np.percentile(phi, percentiles)
    phi = np.clip(phi, lo, hi)
    if phi.mean() <= 0:  # every cluster of identical points: the
        # reference's 0 / 0; equal concentrations instead
        return np.ones_like(phi, dtype=np.float32)
    return (phi / phi.mean()).astype(np.float32)
