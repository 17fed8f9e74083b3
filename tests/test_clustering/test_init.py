"""Initial centroids: random training points assembled from the ranks'
rows, and k-means++ seeding."""
import numpy as np
import torch
import torch.nn.functional as F
from kmeans_helpers import blobs

from hirl_mm.clustering import kmeans_plusplus
from hirl_mm.clustering.init import initial_centroids


def _local_rows(held, num):
    local_row = torch.full((num, ), -1, dtype=torch.int64)
    local_row[held] = torch.arange(len(held))
    return local_row


def test_random_centroids_are_the_sum_of_the_ranks_rows():
    """Each rank contributes the drawn points it holds, zeros elsewhere:
    the sum over two shards equals one process, bitwise, with and without
    a training subsample."""
    points = torch.from_numpy(blobs(n=300, k=6))
    shards = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    shards = shards[:170], shards[170:]
    for train_ids in (None, torch.arange(300)[::3]):
        num_train = 300 if train_ids is None else len(train_ids)

        def draw(rows, held):
            return initial_centroids(rows, _local_rows(held, 300), train_ids,
                                     num_train, 9, 'random',
                                     torch.Generator().manual_seed(4), 0, 0,
                                     64, False)

        one = draw(points, torch.arange(300))
        assert torch.equal(
            draw(points[shards[0]], shards[0]) +
            draw(points[shards[1]], shards[1]), one)
        pick = torch.randperm(
            num_train, generator=torch.Generator().manual_seed(4))[:9]
        ids = pick if train_ids is None else train_ids[pick]
        torch.testing.assert_close(
            one, F.normalize(points[ids], dim=1), rtol=0, atol=1e-6)


def test_kmeans_plusplus_spreads_over_far_apart_groups():
    """D^2 sampling: after the first pick a point of a group already
    chosen has almost no chance; seeded, so repeatable."""
    rng = np.random.RandomState(0)
    groups = np.repeat(10 * np.eye(4, 8), 50, axis=0)
    points = (groups + 0.01 * rng.randn(200, 8)).astype(np.float32)
    centroids = kmeans_plusplus(points, 4, seed=3)
    assert centroids.shape == (4, 8) and centroids.dtype == np.float32
    nearest_group = np.argmax(centroids, axis=1)
    assert sorted(nearest_group.tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(
        kmeans_plusplus(points, 4, seed=3), centroids)
    assert not np.array_equal(kmeans_plusplus(points, 4, seed=4), centroids)
