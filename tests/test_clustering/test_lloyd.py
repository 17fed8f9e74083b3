"""lloyd_kmeans: weights, restarts, the stop at a fixed point and faiss'
splitting of empty clusters."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kmeans_helpers import assert_same_clustering, blobs

from hirl_mm.clustering import hierarchical_kmeans, lloyd


def test_weights_make_heavy_points_claim_the_clusters():
    """Two close groups of heavy points and twelve far light ones, two
    clusters: equal weights give one to the far points, weights by size
    split the groups. Weights of one change nothing."""
    eye = torch.eye(16)
    torch.manual_seed(0)
    heavy = torch.stack([
        eye[0] + s * 0.3 * eye[1] + 0.01 * torch.randn(16) for s in (1, -1)
        for _ in range(10)
    ])
    points = F.normalize(torch.cat([heavy, eye[3:15]]), dim=1)
    n = len(points)
    kwargs = dict(
        niter=20,
        nredo=20,
        max_points_per_centroid=1000,
        seed=0,
        init='random',
        chunk_size=256,
        precision='fp32',
        distributed=False)
    ids = torch.arange(n)

    def labels(weights=None):
        return lloyd.lloyd_kmeans(
            points, ids, n, 2, weights=weights, **kwargs).labels

    weights = torch.cat([torch.full((20, ), 1000.), torch.ones(12)]).double()
    assert len(set(labels()[:20].tolist())) == 1
    split = labels(weights)
    assert len(set(split[:10].tolist())) == len(set(split[10:20].tolist())) \
        == 1 and split[0] != split[10]
    assert torch.equal(labels(torch.ones(n).double()), labels())


def test_nredo_keeps_the_lowest_objective(monkeypatch):
    """Restarts run from other initialisations; the one whose last
    iteration has the lowest objective wins (faiss' rule)."""
    runs = []
    step = lloyd._lloyd_step

    def spy(*args, **kwargs):
        out = step(*args, **kwargs)
        runs.append((out[0], out[2]))  # centroids are split in place
        return out

    monkeypatch.setattr(lloyd, '_lloyd_step', spy)
    monkeypatch.setattr(lloyd, '_fixed_point', lambda *a: False)
    feats = blobs(n=1500, k=25, seed=2)
    res = hierarchical_kmeans(feats, [25], nredo=4, niter=3, seed=5)
    last = runs[2::3]
    objectives = [obj for _, obj in last]
    assert len(set(objectives)) > 1
    best = last[int(np.argmin(objectives))][0]
    np.testing.assert_array_equal(res.centroids[0],
                                  F.normalize(best, dim=1).numpy())


@pytest.mark.parametrize('weighted', [False, True])
def test_stopping_at_a_fixed_point_changes_nothing(monkeypatch, weighted):
    """A restart stops once its centroids repeat (faiss stops when its
    objective does); running every iteration gives the same tree."""
    feats = blobs(n=1500, k=25, seed=3)
    kw = dict(nredo=3, niter=40, seed=1, weighted_upper_levels=weighted)
    early = hierarchical_kmeans(feats, [25, 5], **kw)
    assert all(1 < it < 3 * 40 for it in early.stats['iterations'])
    monkeypatch.setattr(lloyd, '_fixed_point', lambda *a: False)
    full = hierarchical_kmeans(feats, [25, 5], **kw)
    assert full.stats['iterations'] == [3 * 40, 3 * 40]
    assert_same_clustering(early, full, atol=0)
    assert early.stats['objective'] == full.stats['objective']
    # faiss counts its iterations too, and stops early as well
    ref = hierarchical_kmeans(feats, [25, 5], backend='faiss', **kw)
    assert all(1 < it < 3 * 40 for it in ref.stats['iterations'])


def test_empty_clusters_are_split_like_faiss():
    centroids = torch.tensor([[0., 0., 0.], [1., 2., 4.], [5., 5., 5.]])
    split = lloyd._split_empty_clusters(centroids, torch.tensor([0, 6, 1]),
                                        torch.Generator().manual_seed(0))
    # Only cluster 1 has more than one member to give.
    eps = 1 / 1024
    assert split == 1
    torch.testing.assert_close(
        centroids,
        torch.tensor([[1 + eps, 2 - 2 * eps, 4 + 4 * eps],
                      [1 - eps, 2 + 2 * eps, 4 - 4 * eps], [5., 5., 5.]]))


def sequential_split(centroids, counts, draws):
    """faiss' split_clusters one empty cluster at a time, each donor drawn
    by a linear search of the cumulative weights."""
    counts = counts.double().clone()
    sign = torch.ones(centroids.shape[1])
    sign[1::2] = -1
    eps = 1 / 1024
    for ci, u in zip(torch.nonzero(counts == 0).flatten().tolist(), draws):
        weights = (counts - 1).clamp_min(0)
        cum = weights.cumsum(0)
        cj = int(torch.searchsorted(cum, u * cum[-1], right=True))
        centroids[ci] = centroids[cj] * (1 + eps * sign)
        centroids[cj] *= 1 - eps * sign
        counts[ci] = counts[cj] / 2
        counts[cj] -= counts[ci]


@pytest.mark.parametrize('k, filled', [(3000, 100), (30000, 1000)])
def test_many_empty_clusters_are_split_in_one_pass(k, filled):
    """Collapsed features: almost every cluster is empty. The donors are
    drawn one empty cluster after the other from the updated sizes, as
    faiss does (halves of a split may split again), and every rank draws
    alike (same counts, same seed)."""
    gen = torch.Generator().manual_seed(0)
    centroids = torch.zeros(k, 6)
    centroids[:filled] = torch.rand(filled, 6, generator=gen) + 0.5
    counts = torch.zeros(k, dtype=torch.long)
    counts[:filled] = torch.randint(1, 300, (filled, ), generator=gen)
    out, again = centroids.clone(), centroids.clone()
    for split in (out, again):
        nsplit = lloyd._split_empty_clusters(split, counts,
                                             torch.Generator().manual_seed(1))
        assert nsplit == k - filled
    assert torch.equal(out, again)
    # every cluster is now a slightly perturbed copy of an original one
    assert bool((out != 0).all())
    originals = F.normalize(centroids[:filled], dim=1)
    cosine = F.normalize(out, dim=1) @ originals.t()
    assert float(cosine.max(1).values.min()) > 0.999
    if k <= 3000:  # the same draws, one linear search at a time
        draws = torch.rand(
            k - filled,
            generator=torch.Generator().manual_seed(1),
            dtype=torch.float64).tolist()
        expected = centroids.clone()
        sequential_split(expected, counts, draws)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=0)


def test_duplicated_points_reseed_empty_clusters(monkeypatch):
    """Most points are one point repeated: random initial centroids
    coincide and all but one of them lose their points; splitting gives
    them back work (fewer empty clusters, lower objective than without)."""
    rng = np.random.RandomState(0)
    feats = np.concatenate(
        [np.repeat(rng.randn(1, 8), 60, 0),
         rng.randn(12, 8)]).astype(np.float32)
    splits = []
    split = lloyd._split_empty_clusters
    monkeypatch.setattr(
        lloyd, '_split_empty_clusters',
        lambda *args: splits.append(split(*args)) or splits[-1])
    a = hierarchical_kmeans(feats, [8], nredo=2, niter=10)
    assert sum(splits) > 0
    assert_same_clustering(
        a, hierarchical_kmeans(feats, [8], nredo=2, niter=10), atol=0)
    monkeypatch.setattr(lloyd, '_split_empty_clusters', lambda *args: 0)
    unsplit = hierarchical_kmeans(feats, [8], nredo=2, niter=10)
    assert a.stats['nonempty'][0] > unsplit.stats['nonempty'][0]

    assert a.stats['objective'][0] < unsplit.stats['objective'][0]
