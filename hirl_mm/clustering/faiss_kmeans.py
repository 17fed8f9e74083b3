"""One level of k-means with ``faiss.Kmeans`` (one process): the
reference's clustering, kept as an alternative backend."""
from typing import Optional

import numpy as np
import torch

from .init import kmeans_plusplus
from .lloyd import LevelResult


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


def faiss_level(points: np.ndarray,
                k: int,
                seed: int,
                niter: int,
                nredo: int,
                init: str,
                max_points_per_centroid: int,
                min_points_per_centroid: int,
                verbose: bool,
                weights: Optional[np.ndarray] = None) -> LevelResult:
    """k-means of ``points`` (N, D), float32, with faiss, on a GPU when
    faiss has one; ``weights`` (N, ) as in ``faiss.Kmeans.train``. faiss
    stops a restart when its objective repeats."""
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
    return LevelResult(
        torch.as_tensor(kmeans.centroids), torch.as_tensor(labels),
        torch.as_tensor(dist[:, 0]), float(dist.sum(dtype=float)),
        len(np.unique(labels)),
        getattr(kmeans, 'iterations', len(kmeans.iteration_stats)))
