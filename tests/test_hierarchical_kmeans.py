import numpy as np
import pytest

from hirl_mm.clustering import check_num_clusters, hierarchical_kmeans


def planted_tree(seed=0, coarse=4, fine_per_coarse=3, per_fine=40, dim=16):
    rng = np.random.RandomState(seed)
    feats, fine, parent = [], [], []
    for c in range(coarse):
        centre = np.zeros(dim)
        centre[c] = 10
        for f in range(fine_per_coarse):
            sub = centre + rng.randn(dim)
            feats.append(sub + 0.05 * rng.randn(per_fine, dim))
            fine += [len(parent)] * per_fine
            parent.append(c)
    return np.concatenate(feats).astype(np.float32), np.array(fine), \
        np.array(parent)


def test_recovers_planted_hierarchy():
    feats, fine, fine_parent = planted_tree()
    res = hierarchical_kmeans(feats, [12, 4], seed=0, init='kmeans++')
    # Level 0 equals the planted fine clusters up to a relabelling.
    pairs = set(zip(res.assignments.tolist(), fine.tolist()))
    assert len(pairs) == 12
    assert len({a for a, _ in pairs}) == 12
    fine_of_cluster = dict(pairs)
    # Level 1 groups them exactly by planted coarse cluster.
    coarse_pairs = {(res.parents[0][k], fine_parent[fine_of_cluster[k]])
                    for k in range(12)}
    assert len(coarse_pairs) == 4
    assert len({a for a, _ in coarse_pairs}) == 4
    # Shapes, normalised centroids, consistent paths.
    assert [c.shape for c in res.centroids] == [(12, 16), (4, 16)]
    np.testing.assert_allclose(
        np.linalg.norm(res.centroids[1], axis=1), 1, rtol=1e-5)
    assert res.parents[0].shape == (12, )
    assert res.paths().shape == (len(feats), 2)
    np.testing.assert_array_equal(res.paths()[:, 1],
                                  res.parents[0][res.assignments])


def test_deterministic():
    feats, _, _ = planted_tree(seed=1)
    a = hierarchical_kmeans(feats, [10, 3], seed=3, nredo=1)
    b = hierarchical_kmeans(feats, [10, 3], seed=3, nredo=1)
    np.testing.assert_array_equal(a.assignments, b.assignments)
    np.testing.assert_array_equal(a.parents[0], b.parents[0])
    np.testing.assert_array_equal(a.centroids[1], b.centroids[1])


def test_too_few_points_is_a_config_error():
    feats = np.random.rand(20, 4).astype(np.float32)
    with pytest.raises(ValueError, match=r'20 points into 30.*num_clusters'):
        hierarchical_kmeans(feats, [30, 5])
    with pytest.raises(ValueError, match='strictly decrease'):
        check_num_clusters(100, [10, 10])
    with pytest.raises(ValueError, match='non-empty'):
        check_num_clusters(100, [])
