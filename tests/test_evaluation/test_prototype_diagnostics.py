"""Clustering statistics from the sparse contingency table: sklearn's ARI
and NMI, the exact matching accuracy at any size, and the hook's
statistics of a 30k-cluster tree in O(N + K)."""
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.optimize
import sklearn.metrics
from sklearn import metrics as skm

import hirl_mm.engine.hooks.prototype_hook
from hirl_mm.clustering import HierarchicalClustering
from hirl_mm.engine import HierarchicalPrototypeHook
from hirl_mm.evaluation import (DENSE_MATCHING_MAX_ENTRIES, clustering_scores,
                                contingency, matching_accuracy,
                                prototype_tree_diagnostics)


def labellings():
    """(labels, preds) pairs: random ones, and the limit cases."""
    rng = np.random.RandomState(0)
    n = 300
    perm = rng.permutation(n)
    cases = [
        (np.zeros(n, int), np.zeros(n, int)),  # one cluster, one class
        (np.zeros(n, int), rng.randint(0, 7, n)),  # one class
        (rng.randint(0, 7, n), np.zeros(n, int)),  # one cluster
        (np.arange(n), perm),  # all distinct on both sides
        (np.arange(n), np.zeros(n, int)),
        (np.zeros(n, int), np.arange(n)),
        (rng.randint(0, 5, n), np.arange(n)),
        (np.array([3]), np.array([8])),  # one sample
        (np.array([0, 1]), np.array([0, 0])),
        (perm % 9, perm % 9),  # identical partitions, other ids
        (perm % 6, perm % 3),  # nested partitions
        # negative, sparse and huge ids (the np.unique path)
        (rng.randint(-4, 4, n) * 1000, rng.randint(0, 20, n) * 10**12),
    ]
    for c, k, size in [(5, 6, 200), (40, 300, 5000), (300, 40, 5000),
                       (1000, 3000, 4000), (2, 2, 10)]:
        cases.append((rng.randint(0, c, size), rng.randint(0, k, size)))
    # correlated: a noisy copy of the classes
    labels = rng.randint(0, 50, 3000)
    noisy = np.where(rng.rand(3000) < 0.3, rng.randint(0, 80, 3000), labels)
    cases.append((labels, noisy))
    return cases


@pytest.mark.parametrize('labels, preds', labellings())
def test_ari_and_nmi_equal_sklearns(labels, preds):
    # sklearn's adjusted_rand_score and normalized_mutual_info_score
    # (arithmetic mean, its default) are the reference semantics,
    # limit cases included
    scores = clustering_scores(labels, preds, metrics=('nmi', 'ari'))
    assert list(scores) == ['nmi', 'ari']
    assert scores['ari'] == pytest.approx(
        100 * skm.adjusted_rand_score(labels, preds), rel=0, abs=1e-8)
    assert scores['nmi'] == pytest.approx(
        100 * skm.normalized_mutual_info_score(labels, preds), rel=0, abs=1e-8)


def dense_hungarian(labels, preds):
    """The accuracy as it was defined: a square table of every id."""
    labels = np.unique(labels, return_inverse=True)[1]
    preds = np.unique(preds, return_inverse=True)[1]
    size = max(labels.max(), preds.max()) + 1
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (preds, labels), 1)
    rows, cols = scipy.optimize.linear_sum_assignment(-counts)
    return 100.0 * counts[rows, cols].sum() / len(labels)


@pytest.mark.parametrize('labels, preds', labellings())
def test_sparse_matching_equals_the_dense_assignment(labels, preds):
    table = contingency(labels, preds)
    expected = dense_hungarian(labels, preds)
    # max_dense=0: the sparse matching of the non-zero cells, exact too
    for max_dense in (None, 0):
        acc = matching_accuracy(table, max_dense=max_dense)
        assert acc == pytest.approx(expected, abs=1e-9)


def test_sparse_matching_of_a_planted_optimum():
    """Each cluster lies in one class, so the best matching takes each
    class's largest cluster."""
    rng = np.random.RandomState(1)
    clusters = rng.permutation(np.r_[np.arange(3000),
                                     rng.randint(0, 3000, 17000)])
    labels = clusters % 100  # 30 clusters per class
    sizes = np.bincount(clusters, minlength=3000)
    best = sum(sizes[c::100].max() for c in range(100))
    table = contingency(labels, clusters)
    assert len(table.counts) == 3000
    for max_dense in (None, 0):  # dense (affordable here), then sparse
        acc = matching_accuracy(table, max_dense=max_dense)
        assert acc == pytest.approx(100 * best / 20000)


def big_tree(num_images=40000, num_clusters=(30000, 10000, 1000), seed=0):
    """A tree of the flagship's sizes, made by hand (no k-means): every
    cluster has a member at every level."""
    rng = np.random.RandomState(seed)

    def members(num, k):
        ids = np.concatenate([np.arange(k), rng.randint(0, k, num - k)])
        return rng.permutation(ids)

    sizes = (num_images, ) + tuple(num_clusters)
    return HierarchicalClustering(
        assignments=members(num_images, num_clusters[0]),
        parents=[
            members(sizes[lvl], sizes[lvl + 1])
            for lvl in range(1, len(num_clusters))
        ],
        centroids=[np.zeros((k, 2), np.float32) for k in num_clusters],
        distances=[rng.rand(n).astype(np.float32) for n in sizes[:-1]],
        stats=dict(
            seconds=[1.0] * len(num_clusters),
            iterations=[20] * len(num_clusters)))


class Scalars:

    def __init__(self):
        self.logged = {}

    def add_scalars(self, scalars, step):
        self.logged[step] = dict(scalars)


def test_hook_statistics_of_30k_clusters_are_linear(monkeypatch):
    """Rank 0 computes these while the other ranks wait in a collective
    (NCCL's watchdog: 10 minutes). At K = 30000 sklearn's AMI takes about
    24 minutes and a dense Hungarian table 7 GB: neither may run, and the
    peak memory stays O(N + K)."""

    def no_ami(*args, **kwargs):
        raise AssertionError('AMI computed for a statistic nobody logs')

    lsa = scipy.optimize.linear_sum_assignment

    def capped_lsa(cost, *args, **kwargs):
        assert np.size(cost) <= DENSE_MATCHING_MAX_ENTRIES, np.shape(cost)
        return lsa(cost, *args, **kwargs)

    monkeypatch.setattr(sklearn.metrics, 'adjusted_mutual_info_score', no_ami)
    monkeypatch.setattr(scipy.optimize, 'linear_sum_assignment', capped_lsa)
    clustering = big_tree()
    rng = np.random.RandomState(2)
    num_images = len(clustering.assignments)
    fine = rng.randint(0, 1000, num_images)
    labels = dict(fine=fine, coarse=fine // 50)
    previous = np.where(
        rng.rand(num_images) < 0.5, clustering.assignments,
        rng.randint(0, 30000, num_images))
    hook = HierarchicalPrototypeHook()
    hook.labels = labels
    warnings, infos = [], []
    runner = SimpleNamespace(
        iter=69,
        logger=SimpleNamespace(info=infos.append, warning=warnings.append),
        visualizer=Scalars())
    tracemalloc.start()
    try:
        scalars = hook.log_clustering(runner, clustering, previous,
                                      dict(kmeans=2.0), 7)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert warnings == []
    # at the next iteration's step, with mmengine's 1-based epoch
    assert runner.visualizer.logged[70] == dict(scalars, epoch=8)
    # the log: one row per level, every column of the 30 scalars' kinds
    title, header, *rows = infos[0].split('\n')
    assert title == 'Prototypes of epoch 8, kmeans 2.00 s:'
    assert header.split('  ')[-1] == 'ARI vs previous'
    for column in ('clusters', 'non-empty', 'objective', 'seconds', 'fine NMI',
                   'fine ACC', 'coarse NMI', 'coarse ACC'):
        assert column in header
    assert [row.split()[:3] for row in rows] == [['0', '30000', '30000'],
                                                 ['1', '10000', '10000'],
                                                 ['2', '1000', '1000']]
    assert max(map(len, infos[0].split('\n'))) < 120
    # a 30000 x 1000 dense table alone is 240 MB
    assert peak < 64 * 2**20, peak
    paths = clustering.paths()
    assert scalars['prototypes/level0_ari_vs_previous'] == pytest.approx(
        100 * skm.adjusted_rand_score(previous, clustering.assignments),
        abs=1e-8)
    for lvl in range(3):
        for name, lab in labels.items():
            assert scalars[f'prototypes/level{lvl}_{name}_nmi'] == \
                pytest.approx(100 * skm.normalized_mutual_info_score(
                    lab, paths[:, lvl]), abs=1e-8)
            acc = scalars[f'prototypes/level{lvl}_{name}_acc']
            # between a greedy matching and each side's best alone
            table = contingency(lab, paths[:, lvl])
            upper = min(
                _best_cells(table.classes, table).sum(),
                _best_cells(table.clusters, table).sum())
            assert 100 * _greedy(table) / num_images <= acc + 1e-9
            assert acc <= 100 * upper / num_images + 1e-9
    assert scalars['prototypes/level2_fine_acc'] == pytest.approx(
        dense_hungarian(fine, paths[:, 2]))
    for lvl, k in enumerate((30000, 10000, 1000)):
        assert scalars[f'prototypes/level{lvl}_nonempty'] == k
        assert scalars[f'prototypes/level{lvl}_iterations'] == 20
    assert scalars['prototypes/seconds_kmeans'] == 2.0
    assert not any('_ami' in key or key.endswith('_ari') for key in scalars)


def _best_cells(ids, table):
    """Largest cell of every class (``table.classes``) or cluster."""
    best = np.zeros(ids.max() + 1, np.int64)
    np.maximum.at(best, ids, table.counts)
    return best


def _greedy(table):
    """Samples on a greedy matching: largest cells first."""
    used_classes, used_clusters, total = set(), set(), 0
    for i in np.argsort(-table.counts, kind='stable'):
        c, k = table.classes[i], table.clusters[i]
        if c not in used_classes and k not in used_clusters:
            used_classes.add(c)
            used_clusters.add(k)
            total += table.counts[i]
    return total


def test_hook_statistics_never_stop_the_training(monkeypatch):
    """The tree is installed when they run: a failure is a warning and the
    timings are still logged."""

    def broken(*args):
        raise MemoryError('no room')

    monkeypatch.setattr(hirl_mm.engine.hooks.prototype_hook,
                        'prototype_tree_diagnostics', broken)
    hook = HierarchicalPrototypeHook()
    warnings, infos = [], []
    runner = SimpleNamespace(
        iter=0,
        logger=SimpleNamespace(info=infos.append, warning=warnings.append),
        visualizer=Scalars())
    scalars = hook.log_clustering(runner, big_tree(60, (6, 3)), None,
                                  dict(features=1.5), 3)
    assert scalars == {'prototypes/seconds_features': 1.5}
    assert runner.visualizer.logged[1] == dict(scalars, epoch=4)
    assert len(warnings) == 1 and 'MemoryError: no room' in warnings[0]
    assert 'epoch 4' in warnings[0]
    assert infos[0].split('\n')[2:] == [
        '    0         6          -          -          -        -',
        '    1         3          -          -          -        -',
    ]


def test_diagnostics_skip_what_they_cannot_compare():
    clustering = big_tree(60, (6, 3))
    scalars = prototype_tree_diagnostics(
        clustering,
        previous=np.zeros(59, int),  # another training set
        labels=dict(fine=np.zeros(60, int), coarse=np.zeros(10, int)))
    assert 'level0_ari_vs_previous' not in scalars
    assert 'level1_fine_acc' in scalars
    assert not any('coarse' in key for key in scalars)
    assert scalars['level0_fine_nmi'] == 0  # one class: no information
