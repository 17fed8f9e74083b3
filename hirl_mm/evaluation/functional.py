from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def weighted_knn(train_feats: torch.Tensor,
                 train_labels: torch.Tensor,
                 test_feats: torch.Tensor,
                 test_labels: torch.Tensor,
                 ks: Sequence[int] = (10, 20, 100, 200),
                 temperature: float = 0.07,
                 topk: Sequence[int] = (1, 5),
                 chunk_size: int = 1024) -> Dict[str, float]:
    """Weighted kNN accuracy (%) of the reference protocol.

    Features are L2-normalised; each test sample votes with its k nearest
    training samples (cosine similarity), weighted by ``exp(sim / T)``.
    Test samples are processed in chunks, so memory is
    O(chunk_size x N_train), never O(N_test x N_train).

    Returns:
        dict: ``{f'top{t}_k{k}': accuracy}`` for every k and t.
    """
    train_feats = F.normalize(train_feats.float(), dim=1)
    test_feats = F.normalize(test_feats.float(), dim=1)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    # k larger than the bank uses the whole bank (keys keep the asked k)
    max_k = min(max(ks), len(train_feats))
    correct = {(k, t): 0 for k in ks for t in topk}
    for start in range(0, len(test_feats), chunk_size):
        feats = test_feats[start:start + chunk_size]
        labels = test_labels[start:start + chunk_size]
        sim, idx = (feats @ train_feats.t()).topk(max_k, dim=1)  # B x K
        weight = (sim / temperature).exp()
        neighbour_labels = train_labels[idx]  # B x K
        for k in ks:
            votes = torch.zeros(len(feats), num_classes)
            votes.scatter_add_(1, neighbour_labels[:, :k], weight[:, :k])
            pred = votes.topk(min(max(topk), num_classes), dim=1)[1]  # B x T
            hit = pred == labels[:, None]
            for t in topk:
                correct[(k, t)] += int(hit[:, :t].any(dim=1).sum())
    return {
        f'top{t}_k{k}': 100.0 * c / len(test_feats)
        for (k, t), c in correct.items()
    }


# clusters x classes entries up to which the matching accuracy solves the
# dense table (linear_sum_assignment, 32 MB of float64); above it, the
# exact sparse matching of the table's non-zero cells
DENSE_MATCHING_MAX_ENTRIES = 4_000_000
CLUSTERING_METRICS = ('nmi', 'ami', 'ari', 'acc')


class Contingency(NamedTuple):
    """The non-zero cells of a classes x clusters contingency table, sorted
    by class, then cluster.

    Attributes:
        classes (np.ndarray): Class index (0 .. C - 1) of each cell.
        clusters (np.ndarray): Cluster index (0 .. K - 1) of each cell.
        counts (np.ndarray): Samples in each cell, int64.
        class_sizes (np.ndarray): Samples per class, (C, ), none empty.
        cluster_sizes (np.ndarray): Samples per cluster, (K, ), none empty.
    """
    classes: np.ndarray
    clusters: np.ndarray
    counts: np.ndarray
    class_sizes: np.ndarray
    cluster_sizes: np.ndarray

    @property
    def num_samples(self) -> int:
        return int(self.counts.sum())


def _dense_ids(values: np.ndarray) -> Tuple[np.ndarray, int]:
    """Ids 0 .. M - 1 of the M distinct values, in sorted order."""
    values = np.asarray(values).ravel()
    if values.dtype.kind in 'iu' and values.size and values.min() >= 0 \
            and values.max() < 4 * values.size + 2**16:
        # cluster ids and class labels: a bincount, no sort
        values = values.astype(np.int64, copy=False)
        present = np.bincount(values) > 0
        ids = np.cumsum(present) - 1
        return ids[values], int(present.sum())
    uniques, ids = np.unique(values, return_inverse=True)
    return ids.ravel(), len(uniques)


def contingency(labels: np.ndarray, preds: np.ndarray) -> Contingency:
    """The sparse contingency table of two labellings.

    O(N + C x K) when the table is small, else a sort of the N (class,
    cluster) pairs; memory O(N + number of non-zero cells) either way.

    Args:
        labels (np.ndarray): Class of every sample, (N, ).
        preds (np.ndarray): Cluster of every sample, (N, ).

    Returns:
        Contingency: Its non-zero cells and the marginals.
    """
    if np.shape(labels) != np.shape(preds) or np.ndim(labels) != 1:
        raise ValueError('labels and preds must be 1-D arrays of one length, '
                         f'got shapes {np.shape(labels)} and '
                         f'{np.shape(preds)}.')
    classes, num_classes = _dense_ids(labels)
    clusters, num_clusters = _dense_ids(preds)
    cells = classes.astype(np.int64) * num_clusters + clusters
    if num_classes * num_clusters <= max(DENSE_MATCHING_MAX_ENTRIES,
                                         len(cells)):
        table = np.bincount(cells, minlength=num_classes * num_clusters)
        cells = np.flatnonzero(table)
        counts = table[cells]
    else:
        cells, counts = np.unique(cells, return_counts=True)
    cell_classes, cell_clusters = np.divmod(cells, max(num_clusters, 1))
    counts = counts.astype(np.int64)
    return Contingency(
        cell_classes, cell_clusters, counts,
        np.bincount(cell_classes, weights=counts,
                    minlength=num_classes).astype(np.int64),
        np.bincount(cell_clusters, weights=counts,
                    minlength=num_clusters).astype(np.int64))


def adjusted_rand_index(table: Contingency) -> float:
    """Adjusted Rand index of a contingency table, in [-0.5, 1].

    sklearn's ``adjusted_rand_score`` (the pair confusion matrix; 1.0 when
    the labellings agree on every pair, e.g. both one cluster), from the
    table's O(non-zero cells) in exact integers.
    """
    n = table.num_samples
    same_both = int(np.square(table.counts).sum())
    same_class = int(np.square(table.class_sizes).sum())
    same_cluster = int(np.square(table.cluster_sizes).sum())
    tp = same_both - n
    fp = same_cluster - same_both
    fn = same_class - same_both
    tn = n * n - fp - fn - same_both
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) *
                                        (fp + tn))


def _entropy(sizes: np.ndarray) -> float:
    if len(sizes) <= 1:
        return 0.0
    sizes = sizes.astype(np.float64)
    total = sizes.sum()
    return float(-np.sum((sizes / total) * (np.log(sizes) - np.log(total))))


def normalized_mutual_info(table: Contingency) -> float:
    """NMI of a contingency table with the arithmetic mean of the two
    entropies as normaliser, in [0, 1].

    sklearn's ``normalized_mutual_info_score`` (its default
    ``average_method='arithmetic'`` and limit cases: 1.0 when both
    labellings are one cluster, 0.0 when either alone is), from the
    table's O(non-zero cells).
    """
    num_classes, num_clusters = len(table.class_sizes), len(
        table.cluster_sizes)
    if num_classes == num_clusters and num_classes <= 1:
        return 1.0
    if num_classes == 1 or num_clusters == 1:
        return 0.0  # no mutual information
    n = float(table.num_samples)
    counts = table.counts.astype(np.float64)
    outer = table.class_sizes[table.classes] * \
        table.cluster_sizes[table.clusters]  # int64: <= N^2
    p = counts / n
    mi = p * (np.log(counts) - np.log(n)) + p * (
        -np.log(outer.astype(np.float64)) + 2 * np.log(n))
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    mi = max(float(mi.sum()), 0.0)
    if mi == 0:
        return 0.0
    normalizer = (_entropy(table.class_sizes) +
                  _entropy(table.cluster_sizes)) / 2
    return mi / max(normalizer, np.finfo(np.float64).eps)


def _sparse_max_matching(table: Contingency) -> int:
    """Samples on the best one-to-one cluster -> class matching, from the
    table's non-zero cells only (exact).

    A maximum-weight matching of the bipartite graph of the non-zero cells,
    which need not match every cluster or class, as a minimum-weight *full*
    matching (``min_weight_full_bipartite_matching``): every cluster ``i``
    gets a spare class ``i'`` and every class ``j`` a spare cluster ``j'``;
    an edge ``j' -> i'`` beside each cell ``(i, j)`` lets the spares of a
    matched pair match each other. Spare edges weigh 1 and a cell weighs
    ``count x (K + C + 1)``, so no number of spare edges can outweigh one
    more sample on the matching, and every weight is an integer far below
    2^53 (exact in float64).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching
    num_classes, num_clusters = len(table.class_sizes), len(
        table.cluster_sizes)
    nodes = num_classes + num_clusters
    # left: clusters 0 .. K - 1, spare clusters K .. K + C - 1;
    # right: classes 0 .. C - 1, spare classes C .. C + K - 1
    cl_range, ca_range = np.arange(num_clusters), np.arange(num_classes)
    rows = np.concatenate([
        table.clusters, cl_range, num_clusters + ca_range,
        num_clusters + table.classes
    ])
    cols = np.concatenate([
        table.classes, num_classes + cl_range, ca_range,
        num_classes + table.clusters
    ])
    weights = np.ones(len(rows))
    weights[:len(table.counts)] = table.counts * float(nodes + 1)
    graph = csr_matrix((weights, (rows, cols)), shape=(nodes, nodes))
    left, right = min_weight_full_bipartite_matching(graph, maximize=True)
    real = (left < num_clusters) & (right < num_classes)
    # the cells are sorted by class, then cluster
    cells = table.classes * num_clusters + table.clusters
    matched = np.searchsorted(cells, right[real] * num_clusters + left[real])
    return int(table.counts[matched].sum())


def matching_accuracy(table: Contingency,
                      max_dense: Optional[int] = None) -> float:
    """Best one-to-one cluster -> class matching accuracy (%) of a table.

    Exact either way: ``linear_sum_assignment`` on the dense clusters x
    classes table up to ``max_dense`` entries, above them a sparse
    matching of the non-zero cells, O(cells) memory
    (:func:`_sparse_max_matching`).

    Args:
        table (Contingency): The contingency table.
        max_dense (int, optional): Largest dense table. Defaults to
            :data:`DENSE_MATCHING_MAX_ENTRIES`.

    Returns:
        float: Matched samples over all samples, x100; NaN for no sample.
    """
    n = table.num_samples
    if n == 0:
        return float('nan')
    num_classes, num_clusters = len(table.class_sizes), len(
        table.cluster_sizes)
    if max_dense is None:
        max_dense = DENSE_MATCHING_MAX_ENTRIES
    if num_classes * num_clusters <= max_dense:
        from scipy.optimize import linear_sum_assignment
        dense = np.zeros((num_clusters, num_classes), dtype=np.int64)
        dense[table.clusters, table.classes] = table.counts
        rows, cols = linear_sum_assignment(dense, maximize=True)
        matched = int(dense[rows, cols].sum())
    else:
        matched = _sparse_max_matching(table)
    return 100.0 * matched / n


def hungarian_accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Best one-to-one cluster -> class matching accuracy (%)."""
    return matching_accuracy(contingency(labels, preds))


def _check_metrics(metrics: Sequence[str]) -> Tuple[str, ...]:
    metrics = (metrics, ) if isinstance(metrics, str) else tuple(metrics)
    unknown = set(metrics) - set(CLUSTERING_METRICS)
    if unknown:
        raise ValueError(f'Unknown clustering metrics {sorted(unknown)}: '
                         f'choose from {CLUSTERING_METRICS}.')
    return metrics


def clustering_scores(
        labels: np.ndarray,
        preds: np.ndarray,
        metrics: Sequence[str] = CLUSTERING_METRICS) -> Dict[str, float]:
    """NMI, AMI, ARI (x100) and Hungarian accuracy of a clustering.

    NMI, ARI and the accuracy come from the sparse contingency table
    (O(N + non-zero cells); the accuracy exact at any size, see
    :func:`matching_accuracy`); AMI is sklearn's, whose expected mutual
    information grows as clusters x classes (minutes at 30k clusters): ask
    only for the metrics you use.

    Args:
        labels (np.ndarray): Class of every sample, (N, ).
        preds (np.ndarray): Cluster of every sample, (N, ).
        metrics (Sequence[str]): Which of ``'nmi'``, ``'ami'``, ``'ari'``,
            ``'acc'`` to compute. Defaults to all four.

    Returns:
        dict: ``{metric: score}`` in the order of ``CLUSTERING_METRICS``.
    """
    metrics = _check_metrics(metrics)
    table = contingency(labels, preds)
    scores = {}
    for metric in CLUSTERING_METRICS:
        if metric not in metrics:
            continue
        if metric == 'nmi':
            scores[metric] = 100 * normalized_mutual_info(table)
        elif metric == 'ami':
            from sklearn.metrics import adjusted_mutual_info_score
            scores[metric] = 100 * adjusted_mutual_info_score(labels, preds)
        elif metric == 'ari':
            scores[metric] = 100 * adjusted_rand_index(table)
        else:
            scores[metric] = matching_accuracy(table)
    return scores


def prototype_tree_scores(
        paths: np.ndarray,
        labels: Dict[str, np.ndarray],
        metrics: Sequence[str] = CLUSTERING_METRICS) -> Dict[str, float]:
    """How well each level of a learned prototype tree matches each labelling.

    Args:
        paths (np.ndarray): (N, L) cluster id of every training image at
            every level.
        labels (dict): Label arrays, e.g. ``dict(fine=..., coarse=...)``.
        metrics (Sequence[str]): Metrics of :func:`clustering_scores`.
            Defaults to all four (AMI is slow for many clusters).

    Returns:
        dict: ``{f'level{l}_{name}_{metric}': score}``.
    """
    metrics = _check_metrics(metrics)
    scores = {}
    for lvl in range(paths.shape[1]):
        for name, lab in labels.items():
            for metric, value in clustering_scores(lab, paths[:, lvl],
                                                   metrics).items():
                scores[f'level{lvl}_{name}_{metric}'] = value
    return scores
