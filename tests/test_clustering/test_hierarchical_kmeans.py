"""hierarchical_kmeans: the tree, faiss' semantics, bad input, and 1 rank
== 2 gloo ranks (== CUDA, marked gpu)."""
import importlib
import os
import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from sim_nccl import free_port
from worker_exit import end_worker

from hirl_mm.clustering import check_num_clusters, hierarchical_kmeans, lloyd

hkm = importlib.import_module('hirl_mm.clustering.hierarchical_kmeans')


def _one_thread():
    """Tiny problems: intra-op threads only add waits (on a busy machine,
    seconds)."""
    torch.set_num_threads(1)
    if lloyd.faiss_available():
        import faiss
        faiss.omp_set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    _one_thread()
    yield
    torch.set_num_threads(threads)
    if lloyd.faiss_available():
        import faiss
        faiss.omp_set_num_threads(threads)


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


def blobs(n=3000, dim=16, k=30, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(k, dim)
    x = centres[rng.randint(0, k, n)] + 0.3 * rng.randn(n, dim)
    return x.astype(np.float32)


def assert_same_clustering(a, b, atol=1e-5):
    np.testing.assert_array_equal(a.assignments, b.assignments)
    for pa, pb in zip(a.parents, b.parents):
        np.testing.assert_array_equal(pa, pb)
    for ca, cb in zip(a.centroids, b.centroids):
        np.testing.assert_allclose(ca, cb, atol=atol)
    np.testing.assert_allclose(a.distances[0], b.distances[0], atol=atol)


def test_sample_idx_puts_rows_in_id_order():
    feats = blobs(n=600, k=12)
    perm = np.random.RandomState(1).permutation(len(feats))
    kwargs = dict(nredo=2, niter=8, seed=1)
    a = hierarchical_kmeans(feats, [12, 3], **kwargs)
    # A tensor that requires grad (e.g. a memory bank) is used as it is.
    b = hierarchical_kmeans(
        torch.from_numpy(feats[perm]).requires_grad_(), [12, 3],
        sample_idx=perm,
        **kwargs)
    assert_same_clustering(a, b, atol=0)


def test_stats_and_quality_match_faiss():
    feats = blobs(n=2000, k=20)
    ours = hierarchical_kmeans(feats, [20, 4], nredo=3)
    ref = hierarchical_kmeans(feats, [20, 4], nredo=3, backend='faiss')
    for res in (ours, ref):
        assert res.stats['nonempty'][0] == len(np.unique(res.assignments))
        np.testing.assert_allclose(
            res.stats['objective'],
            [d.sum(dtype=np.float64) for d in res.distances],
            rtol=1e-5)
        assert len(res.stats['seconds']) == 2
    assert ours.stats['objective'][0] <= 1.01 * ref.stats['objective'][0]


def test_torch_assignment_equals_faiss_search(monkeypatch):
    """Without faiss the CPU assigns with torch's GEMM: same clustering."""
    feats = blobs(n=1200, k=15)
    with_faiss = hierarchical_kmeans(feats, [15, 4], nredo=2, niter=8)
    monkeypatch.setattr(lloyd, 'faiss_available', lambda: False)
    without = hierarchical_kmeans(feats, [15, 4], nredo=2, niter=8)
    assert_same_clustering(without, with_faiss, atol=1e-5)


def test_unit_rows_are_clustered_in_place_as_a_normalised_copy():
    """The hook hands L2-normalised shards: used as they are (views, no
    copy, the caller's tensor untouched), same clustering as the same
    points at other scales, normalised chunk by chunk."""
    feats = F.normalize(torch.from_numpy(blobs(n=1500, k=12)), dim=1)
    scaled = feats * torch.linspace(0.5, 3, len(feats))[:, None]
    before = feats.clone()
    assert bool(lloyd.unit_rows(feats)) and not bool(lloyd.unit_rows(scaled))
    in_place = hierarchical_kmeans(feats, [12, 3], nredo=2, chunk_size=512)
    assert torch.equal(feats, before)
    assert_same_clustering(
        hierarchical_kmeans(scaled, [12, 3], nredo=2, chunk_size=512),
        in_place,
        atol=1e-5)
    assert torch.equal(
        lloyd.normalize_rows_(scaled.clone()),
        lloyd.normalized_rows(scaled, None, 512))


def test_fixed_point_sums_are_exact_through_float64(monkeypatch):
    """The CPU sums fixed-point integers in float64, moved to int64 every
    _EXACT_ROWS rows: equal to int64 sums of the rounded values."""
    gen = torch.Generator().manual_seed(0)
    points = F.normalize(torch.randn(1000, 24, generator=gen), dim=1)
    labels = torch.randint(0, 7, (1000, ), generator=gen)
    fixed = (points.double() * 2.0**32).round().long()
    expected = torch.zeros(
        7, 24, dtype=torch.long).index_add_(0, labels, fixed)
    for exact_rows in (2**20, 100):  # one move at the end / ten moves
        monkeypatch.setattr(lloyd, '_EXACT_ROWS', exact_rows)
        sums = torch.zeros(7, 24, dtype=torch.long)
        acc = torch.zeros(7, 24, dtype=torch.float64)
        scaled = torch.empty(64, 24, dtype=torch.float64)
        pending = lloyd._add_fixed_point(sums, acc, scaled, 0, points, labels)
        sums += acc.long()
        assert torch.equal(sums, expected)
        assert 0 < pending <= exact_rows


@pytest.mark.parametrize('int64_path', [False, True])
def test_sums_kept_through_steps_equal_sums_from_scratch(int64_path):
    """A restart moves only the rows that changed cluster in its kept
    fixed-point sums: bitwise what summing every row gives. Also through
    the GPU's int64 path (truncation, run here on CPU tensors)."""
    points = F.normalize(torch.from_numpy(blobs(n=900, k=9, seed=4)), dim=1)

    def sums():
        fixed = lloyd._FixedPointSums(9, points.shape[1], points.device)
        fixed.gpu = int64_path
        return fixed

    kept = sums()
    centroids = points[:9].clone()
    for _ in range(4):
        out = lloyd._lloyd_step(points, None, centroids, 256, 'fp32', False,
                                False, kept)
        anew = lloyd._lloyd_step(points, None, centroids, 256, 'fp32', False,
                                 False, sums())
        assert torch.equal(out[0], anew[0]) and torch.equal(out[1], anew[1])
        assert out[2] == anew[2]
        centroids = out[0]
    assert len(kept.previous) == len(points)


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


def test_weighted_sums_do_not_depend_on_the_order():
    """Weighted sums are integers summed exactly in float64: any order of
    the points (a GPU's atomics) gives bitwise the same step."""
    gen = torch.Generator().manual_seed(0)
    points = F.normalize(torch.randn(700, 12, generator=gen), dim=1)
    weights = torch.rand(700, generator=gen, dtype=torch.float64) * 1e3
    centroids = points[:9].clone()
    scale = lloyd._weight_scale(weights)
    ref = lloyd._weighted_step(points, None, weights, centroids, 256, 'fp32',
                               False, scale)
    for seed in range(3):
        perm = torch.randperm(700, generator=gen)
        out = lloyd._weighted_step(points[perm], None, weights[perm],
                                   centroids, 256, 'fp32', False, scale)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
        assert out[2] == ref[2]
    # within float32 of the float64 weighted means
    labels = lloyd.NearestCentroid(centroids)(points)[1]
    means = torch.zeros(9, 12, dtype=torch.float64)
    means.index_add_(0, labels, points.double() * weights[:, None])
    totals = torch.zeros(9, dtype=torch.float64)
    totals.index_add_(0, labels, weights)
    torch.testing.assert_close(
        ref[0], (means / totals[:, None]).float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ref[1], totals, rtol=1e-12, atol=0)


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
def test_upper_levels_are_weighted_by_images_under_them(monkeypatch, backend):
    calls = []
    if backend == 'torch':
        inner = hkm.lloyd_kmeans
        monkeypatch.setattr(
            hkm, 'lloyd_kmeans', lambda *a, **kw: calls.append(
                kw.get('weights')) or inner(*a, **kw))
    else:
        inner = hkm._faiss_level
        monkeypatch.setattr(hkm, '_faiss_level',
                            lambda *a: calls.append(a[-1]) or inner(*a))
    feats = blobs(n=600, k=12)
    res = hierarchical_kmeans(
        feats, [12, 4, 2],
        nredo=2,
        backend=backend,
        weighted_upper_levels=True)
    sizes1 = np.bincount(res.assignments, minlength=12)
    sizes2 = np.bincount(res.parents[0], weights=sizes1, minlength=4)
    assert calls[0] is None
    np.testing.assert_array_equal(np.asarray(calls[1]), sizes1)
    np.testing.assert_array_equal(np.asarray(calls[2]), sizes2)


def test_subsampled_training_still_assigns_every_point():
    feats = blobs(n=2000, k=20)
    res = hierarchical_kmeans(feats, [20], nredo=1, max_points_per_centroid=10)
    assert res.assignments.shape == (2000, )
    full = hierarchical_kmeans(feats, [20], nredo=1)
    assert res.stats['objective'][0] <= 1.2 * full.stats['objective'][0]


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


@pytest.mark.parametrize('kwargs, match', [
    (dict(features=np.full((10, 4), np.nan, np.float32)), 'NaN or Inf'),
    (dict(features=np.r_[np.ones((9, 4)),
                         [[np.inf, 0, 0, 0]]].astype(np.float32)),
     'NaN or Inf'),
    (dict(features=np.ones(10, np.float32)), '2-D'),
    (dict(sample_idx=np.arange(9)), '9 ids for 10 rows'),
    (dict(sample_idx=np.arange(1, 11)), r'lie in \[0, 10\)'),
    (dict(sample_idx=np.r_[0, np.arange(9)]), 'holds id 0 2 times'),
    (dict(num_samples=12), 'num_samples is 12'),
    (dict(num_clusters=[11]), '10 points into 11'),
    (dict(init='k-means'), 'init must be'),
    (dict(backend='sklearn'), 'backend must be'),
    (dict(precision='tf32'), 'needs CUDA'),
])
def test_bad_input_is_named(kwargs, match):
    args = dict(
        features=np.random.RandomState(0).rand(10, 4).astype(np.float32),
        num_clusters=[3])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hierarchical_kmeans(**args)


@pytest.mark.parametrize(
    'kwargs',
    [dict(backend='faiss'), dict(init='kmeans++')])
def test_single_process_options_are_refused_on_two_ranks(monkeypatch, kwargs):
    monkeypatch.setattr(hkm, 'get_world_size', lambda: 2)
    with pytest.raises(ValueError, match='2 ranks'):
        hierarchical_kmeans(blobs(n=50), [3], **kwargs)
    # One process holding all the points (a metric on rank 0) may.
    res = hierarchical_kmeans(blobs(n=50), [3], distributed=False, **kwargs)
    assert res.assignments.shape == (50, )


def _shards(num, seed=0):
    """Uneven random shards: rank 0 gets 62% of the ids, shuffled."""
    ids = np.random.RandomState(seed).permutation(num)
    return ids[:num * 62 // 100], ids[num * 62 // 100:]


CASE = dict(num_clusters=[30, 6], nredo=2, niter=10, seed=3)
SUBSAMPLED = dict(CASE, max_points_per_centroid=60)
WEIGHTED = dict(CASE, num_clusters=[30, 8, 3], weighted_upper_levels=True)


def _two_ranks(rank, port, out_dir, device, precision):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    _one_thread()
    feats = torch.from_numpy(blobs()).to(device)
    ids = torch.from_numpy(_shards(len(feats))[rank])
    out = {}
    for name, kwargs in (('full', CASE), ('subsampled', SUBSAMPLED),
                         ('weighted', WEIGHTED)):
        out[name] = hierarchical_kmeans(
            feats[ids.to(device)],
            sample_idx=ids,
            precision=precision,
            **kwargs)
    # All points on rank 1, none on rank 0.
    mine = ids[:0] if rank == 0 else torch.arange(len(feats))
    out['one_empty'] = hierarchical_kmeans(
        feats[mine.to(device)], sample_idx=mine, precision=precision, **CASE)
    if rank == 0:  # alone, as a metric computed on rank 0
        out['alone'] = hierarchical_kmeans(
            feats, distributed=False, precision=precision, **CASE)
    errors = []
    for kwargs in (dict(backend='faiss'), dict(init='kmeans++'),
                   dict(sample_idx=torch.arange(len(ids)))):
        try:
            hierarchical_kmeans(
                feats[ids.to(device)],
                **dict(dict(sample_idx=ids), **kwargs),
                num_clusters=[4])
        except ValueError as exc:
            errors.append(str(exc))
    out['errors'] = errors
    with open(os.path.join(out_dir, f'{rank}.pkl'), 'wb') as f:
        pickle.dump(out, f)
    end_worker()


def _check_two_ranks(tmp_path, device, precision='fp32'):
    mp.spawn(
        _two_ranks,
        args=(free_port(), str(tmp_path), device, precision),
        nprocs=2)
    results = []
    for rank in range(2):
        with open(tmp_path / f'{rank}.pkl', 'rb') as f:
            results.append(pickle.load(f))
    feats = torch.from_numpy(blobs()).to(device)
    for name, kwargs in (('full', CASE), ('subsampled', SUBSAMPLED),
                         ('one_empty', CASE), ('weighted', WEIGHTED)):
        one = hierarchical_kmeans(feats, precision=precision, **kwargs)
        for res in results:
            assert_same_clustering(res[name], one)
            assert res[name].stats['nonempty'] == one.stats['nonempty']
        if name == 'weighted':  # bitwise, upper levels included
            for res in results:
                assert_same_clustering(res[name], one, atol=0)
                assert res[name].stats['objective'] == \
                    one.stats['objective']
                for da, db in zip(res[name].distances, one.distances):
                    np.testing.assert_array_equal(da, db)
        if name == 'full':
            assert_same_clustering(results[0]['alone'], one, atol=0)
    errors = results[0]['errors']
    assert 'use backend=' in errors[0]
    assert "use init='random'" in errors[1]
    assert 'holds id 0 2 times (across ranks)' in errors[2]
    assert results[1]['errors'] == errors


def test_two_gloo_ranks_equal_one_process(tmp_path):
    _check_two_ranks(tmp_path, 'cpu')


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('precision', ['fp32', 'tf32', 'bf16'])
def test_cuda_two_ranks_equal_one_process(tmp_path, precision):
    _check_two_ranks(tmp_path, 'cuda', precision)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_equals_cpu():
    feats = blobs()
    cpu = hierarchical_kmeans(feats, **CASE)
    cuda = hierarchical_kmeans(torch.from_numpy(feats).cuda(), **CASE)
    assert_same_clustering(cuda, cpu, atol=1e-4)
