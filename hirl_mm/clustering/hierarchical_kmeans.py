"""Hierarchical k-means: a tree of prototypes, one flat k-means per level.

Level 0 clusters the points, which may lie in shards across the ranks
(:mod:`.shards`, :func:`.lloyd.lloyd_kmeans`); level ``l`` clusters the
L2-normalised centroids of level ``l - 1``, alike on every rank.
"""
import logging
import time
from functools import partial
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import get_rank, get_world_size
from mmengine.logging import print_log

from .faiss_kmeans import faiss_level
from .lloyd import LevelResult, lloyd_kmeans
from .nearest import PRECISIONS
from .rows import default_chunk_size, normalized_rows
from .shards import check_shards, gather_in_id_order


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

    Level 0 clusters the points into ``num_clusters[0]`` clusters, level
    ``l`` the L2-normalised centroids of level ``l - 1``, with seed
    ``seed + l``: deterministic for a fixed seed. The defaults are the HIRL
    reference's settings. With ``backend='torch'`` and several ranks this is
    a collective: each rank passes its shard of the points (left where it
    is, never written to) and gets the whole result, the same as one
    process clustering all the points.

    Args:
        features (Tensor | np.ndarray): This rank's points, (n, D).
        num_clusters (Sequence[int]): Clusters per level, finest first,
            strictly decreasing.
        sample_idx (Tensor | np.ndarray, optional): Global id in
            [0, num_samples) of each row, (n, ); the ranks' ids together
            hold every id once. Defaults to ``arange(n)`` (one rank only).
        num_samples (int, optional): N. Defaults to the total of the
            shards' sizes.
        niter (int): Lloyd iterations per restart at most; a restart stops
            early at a fixed point. Defaults to 20.
        nredo (int): Restarts; the lowest objective is kept. Defaults to 5.
        max_points_per_centroid (int): Above ``K x`` this many points, train
            on a seeded random subsample of that size, then assign all
            points. Defaults to 1000.
        seed (int): Base seed. Defaults to 0.
        init (str): 'random' (K distinct random training points, as faiss)
            or 'kmeans++' (one process only). Defaults to 'random'.
        backend (str): 'torch' (distributed k-means) or 'faiss'
            (``faiss.Kmeans``, one process only). Defaults to 'torch'.
        chunk_size (int, optional): Points per assignment GEMM. Defaults to
            :func:`~.rows.default_chunk_size`.
        verbose (bool): Log every iteration on rank 0. Defaults to False.
        min_points_per_centroid (int): Below this many points per centroid,
            log a debug message (faiss warns). Defaults to 10.
        precision (str): Assignment GEMM of the torch backend: 'fp32',
            'tf32' or 'bf16' (CUDA only). Defaults to 'fp32'.
        distributed (bool, optional): False clusters this process' points
            alone, whatever the world size. Defaults to None: a collective
            whenever the world size is above 1.
        weighted_upper_levels (bool): Weight each upper level's points (the
            centroids below) by the number of images under them. Defaults
            to False: equal weights, as the reference.

    Returns:
        HierarchicalClustering: assignments of all N points in id order,
        parent maps, centroids, distances and per-level ``stats``, on every
        rank.
    """
    world_size = 1 if distributed is False else get_world_size()
    _check_args(backend, init, niter, nredo, max_points_per_centroid,
                precision, world_size)
    features = _as_tensor(features, precision)
    shards = check_shards(features, sample_idx, num_samples, world_size)
    check_num_clusters(shards.num_samples, num_clusters)
    _note_few_points(shards.num_samples, num_clusters[0],
                     min_points_per_centroid)
    log = partial(_log, verbose)
    cluster = partial(
        _cluster_level,
        backend=backend,
        niter=niter,
        nredo=nredo,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=min_points_per_centroid,
        seed=seed,
        init=init,
        chunk_size=chunk_size,
        precision=precision,
        verbose=verbose,
        log=log)
    parents, centroids, distances = [], [], []
    stats = dict(objective=[], nonempty=[], seconds=[], iterations=[])
    points, weights = features, None
    for lvl, k in enumerate(num_clusters):
        start = time.perf_counter()
        if lvl == 0:  # the points, sharded across the ranks
            level = cluster(points, shards.ids, shards.num_samples, int(k),
                            lvl, world_size > 1)
            assignments, dist = gather_in_id_order(level.labels,
                                                   level.distances, shards)
            members = assignments
        else:  # the centroids below, alike in every process
            level = cluster(points, torch.arange(len(points)), len(points),
                            int(k), lvl, False, weights)
            members = level.labels.cpu().numpy().astype(np.int64)
            parents.append(members)
            dist = level.distances.cpu().numpy().astype(np.float32)
        distances.append(dist)
        if weighted_upper_levels:  # images under each cluster of this level
            weights = torch.bincount(
                torch.as_tensor(members), weights=weights,
                minlength=int(k)).double()
        points = F.normalize(level.centroids.to(features.device), dim=1)
        centroids.append(points.cpu().numpy())
        _record(stats, level, time.perf_counter() - start)
        log(f'level {lvl}: {len(dist)} points into {k} clusters, objective '
            f'{level.objective:.6g}, {level.num_nonempty} non-empty, '
            f'{stats["seconds"][-1]:.1f} s')
    return HierarchicalClustering(assignments, parents, centroids, distances,
                                  stats)


def _as_tensor(features, precision: str) -> torch.Tensor:
    """``features`` as a tensor (a NumPy array shares its memory)."""
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    if not isinstance(features, torch.Tensor):
        raise TypeError('features must be a torch.Tensor or np.ndarray, got '
                        f'{type(features).__name__}.')
    if precision != 'fp32' and features.device.type != 'cuda':
        raise ValueError(f"precision={precision!r} needs CUDA features, got "
                         f'features on {features.device}.')
    return features


def _note_few_points(num_points: int, num_clusters: int,
                     min_points_per_centroid: int) -> None:
    if num_points < num_clusters * min_points_per_centroid:
        print_log(
            f'k-means of {num_points} points into {num_clusters} '
            f'clusters: fewer than {min_points_per_centroid} points per '
            'centroid.',
            logger='current',
            level=logging.DEBUG)


def _log(verbose: bool, msg: str) -> None:
    if verbose and get_rank() == 0:
        print_log(f'k-means {msg}', logger='current')


def _cluster_level(points,
                   ids,
                   num_points,
                   k,
                   lvl,
                   distributed,
                   weights=None,
                   *,
                   backend,
                   niter,
                   nredo,
                   max_points_per_centroid,
                   min_points_per_centroid,
                   seed,
                   init,
                   chunk_size,
                   precision,
                   verbose,
                   log) -> LevelResult:
    """k-means of level ``lvl``'s ``points`` with ``backend``, seed
    ``seed + lvl``."""
    if backend == 'faiss':
        pts = normalized_rows(points.cpu(), None, len(points) or 1)
        return faiss_level(
            pts.numpy(), k, seed + lvl, niter, nredo, init,
            max_points_per_centroid, min_points_per_centroid, verbose,
            None if weights is None else weights.numpy().astype(np.float32))
    return lloyd_kmeans(
        points,
        ids,
        num_points,
        k,
        niter=niter,
        nredo=nredo,
        max_points_per_centroid=max_points_per_centroid,
        seed=seed + lvl,
        init=init,
        chunk_size=chunk_size
        or default_chunk_size(k, num_points, points.device, points.shape[1]),
        precision=precision,
        distributed=distributed,
        weights=weights,
        log=lambda msg: log(f'level {lvl}: {msg}'))


def _record(stats: dict, level: LevelResult, seconds: float) -> None:
    stats['objective'].append(level.objective)
    stats['nonempty'].append(level.num_nonempty)
    stats['iterations'].append(level.iterations)
    stats['seconds'].append(seconds)


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
