from typing import List, NamedTuple, Optional, Sequence

import numpy as np


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
    """
    assignments: np.ndarray
    parents: List[np.ndarray]
    centroids: List[np.ndarray]
    distances: List[np.ndarray]

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


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


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


def _faiss_kmeans(points, k, init, nredo, seed, **kwargs):
    """faiss k-means; with k-means++ init every restart is seeded anew."""
    import faiss
    if init == 'random':
        kmeans = faiss.Kmeans(
            points.shape[1], k, nredo=nredo, seed=seed, **kwargs)
        kmeans.train(points)
        return kmeans
    if init != 'kmeans++':
        raise ValueError(f"init must be 'random' or 'kmeans++', got {init!r}")
    best = None
    for redo in range(nredo):
        kmeans = faiss.Kmeans(points.shape[1], k, seed=seed, **kwargs)
        kmeans.train(
            points,
            init_centroids=kmeans_plusplus(points, k, seed * 1000 + redo))
        if best is None or kmeans.obj[-1] < best.obj[-1]:
            best = kmeans
    return best


def hierarchical_kmeans(features: np.ndarray,
                        num_clusters: Sequence[int],
                        niter: int = 20,
                        nredo: int = 5,
                        max_points_per_centroid: int = 1000,
                        min_points_per_centroid: int = 10,
                        seed: int = 0,
                        init: str = 'random',
                        gpu: Optional[bool] = None,
                        verbose: bool = False) -> HierarchicalClustering:
    """Cluster ``features`` into a tree of prototypes with faiss k-means.

    Level 0 clusters the points into ``num_clusters[0]`` clusters; level
    ``l`` clusters the L2-normalised centroids of level ``l - 1``. The
    defaults are the HIRL reference settings; level ``l`` uses seed
    ``seed + l``, so the result is deterministic for a fixed seed.

    Args:
        features (np.ndarray): Points, shape (N, D).
        num_clusters (Sequence[int]): Clusters per level, finest first,
            strictly decreasing.
        niter (int): k-means iterations. Defaults to 20.
        nredo (int): Restarts; the best is kept. Defaults to 5.
        max_points_per_centroid (int): faiss subsamples above this.
            Defaults to 1000.
        min_points_per_centroid (int): faiss warns below this.
            Defaults to 10.
        seed (int): Base seed. Defaults to 0.
        init (str): 'random' (faiss' own, the reference) or 'kmeans++'
            (seeded D^2 sampling, O(N K D): better on small data sets).
            Defaults to 'random'.
        gpu (bool, optional): Use faiss GPU k-means. Defaults to None, i.e.
            whenever faiss was built with GPUs and one is visible.
        verbose (bool): Print faiss progress. Defaults to False.

    Returns:
        HierarchicalClustering: assignments, parent maps and centroids.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f'features must be N x D, got {features.shape}.')
    check_num_clusters(features.shape[0], num_clusters)
    if gpu is None:
        import faiss
        gpu = hasattr(faiss, 'get_num_gpus') and faiss.get_num_gpus() > 0

    parents, centroids, distances = [], [], []
    points = features
    for lvl, k in enumerate(num_clusters):
        kmeans = _faiss_kmeans(
            points,
            int(k),
            init=init,
            nredo=nredo,
            seed=seed + lvl,
            niter=niter,
            max_points_per_centroid=max_points_per_centroid,
            min_points_per_centroid=min_points_per_centroid,
            gpu=bool(gpu),
            verbose=verbose)
        dist, labels = kmeans.index.search(points, 1)
        labels = labels[:, 0].astype(np.int64)
        distances.append(dist[:, 0])
        if lvl == 0:
            assignments = labels
        else:
            parents.append(labels)
        centroids.append(_l2_normalize(kmeans.centroids))
        points = centroids[-1]
    return HierarchicalClustering(assignments, parents, centroids, distances)


def cluster_concentration(distances: np.ndarray,
                          assignments: np.ndarray,
                          num_clusters: int,
                          percentiles: Sequence[float] = (10, 90)):
    """HCSC / PCL concentration of each cluster, normalised to mean 1.

    ``phi_c = mean_{x in c} ||x - c|| / log(n_c + 10)``, clipped to the given
    percentiles of all phi and divided by their mean (multiply by the
    contrastive temperature to get the reference's scale). A cluster with at
    most one member gets the largest phi of the others.

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
    return (phi / phi.mean()).astype(np.float32)
