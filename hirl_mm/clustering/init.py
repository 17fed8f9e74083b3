"""Initial centroids of a k-means restart: random training points (faiss'
initialisation) or k-means++ seeding."""
from typing import Optional

import numpy as np
import torch

from .rows import normalized_rows, sum_over_ranks


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


def initial_centroids(points: torch.Tensor, local_row: torch.Tensor,
                      train_ids: Optional[torch.Tensor], num_train: int,
                      k: int, init: str, generator: torch.Generator, redo: int,
                      seed: int, chunk_size: int,
                      distributed: bool) -> torch.Tensor:
    """The ``k`` initial centroids of restart ``redo``, (k, D) float32, the
    same on every rank.

    'random': ``k`` distinct training points; every rank draws the same
    global ids from ``generator``, the rank holding each contributes its
    row, a sum over ranks assembles them. 'kmeans++' (one process): seeded
    D^2 sampling of the training points, seed ``seed * 1000 + redo``.

    Args:
        points (torch.Tensor): This rank's points, (n, D).
        local_row (torch.Tensor): Row in ``points`` of each global id, -1
            where another rank holds it, (N, ).
        train_ids (torch.Tensor, optional): Global ids of the training
            subsample; None: all ``num_train`` points train.
        num_train (int): Training points of all ranks.
        k (int): Clusters.
        init (str): 'random' or 'kmeans++'.
        generator (torch.Generator): The restart's generator ('random').
        redo (int): The restart ('kmeans++').
        seed (int): The level's seed ('kmeans++').
        chunk_size (int): Rows per normalisation chunk.
        distributed (bool): Sum the rows of all ranks.

    Returns:
        torch.Tensor: The centroids, on ``points.device``.
    """
    if init == 'kmeans++':  # single process: the training set is local
        rows = None if train_ids is None else local_row[train_ids].to(
            points.device)
        train = normalized_rows(points, rows, chunk_size).cpu().numpy()
        return torch.from_numpy(kmeans_plusplus(train, k, seed * 1000 +
                                                redo)).to(points.device)
    pick = torch.randperm(num_train, generator=generator)[:k]
    ids = pick if train_ids is None else train_ids[pick]
    rows = local_row[ids]
    held = torch.nonzero(rows >= 0).flatten()
    centroids = points.new_zeros((k, points.shape[1]), dtype=torch.float32)
    centroids[held.to(points.device)] = normalized_rows(
        points, rows[held].to(points.device), chunk_size)
    return sum_over_ranks(centroids, distributed)  # x + 0 is exact
