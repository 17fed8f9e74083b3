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
from kmeans_helpers import assert_same_clustering, blobs, one_thread
from sim_nccl import free_port
from worker_exit import end_worker

from hirl_mm.clustering import check_num_clusters, hierarchical_kmeans, nearest

hkm = importlib.import_module('hirl_mm.clustering.hierarchical_kmeans')


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
    monkeypatch.setattr(nearest, 'faiss_available', lambda: False)
    without = hierarchical_kmeans(feats, [15, 4], nredo=2, niter=8)
    assert_same_clustering(without, with_faiss, atol=1e-5)


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
def test_upper_levels_are_weighted_by_images_under_them(monkeypatch, backend):
    calls = []
    if backend == 'torch':
        inner = hkm.lloyd_kmeans
        monkeypatch.setattr(
            hkm, 'lloyd_kmeans', lambda *a, **kw: calls.append(
                kw.get('weights')) or inner(*a, **kw))
    else:
        inner = hkm.faiss_level
        monkeypatch.setattr(hkm, 'faiss_level',
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
    one_thread()
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
