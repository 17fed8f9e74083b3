from typing import Dict, Sequence

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


def hungarian_accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Best one-to-one cluster -> class matching accuracy (%)."""
    from scipy.optimize import linear_sum_assignment
    labels, preds = np.asarray(labels), np.asarray(preds)
    size = max(labels.max(), preds.max()) + 1
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (preds, labels), 1)
    rows, cols = linear_sum_assignment(-counts)
    return 100.0 * counts[rows, cols].sum() / len(labels)


def clustering_scores(labels: np.ndarray,
                      preds: np.ndarray) -> Dict[str, float]:
    """NMI, AMI, ARI (x100) and Hungarian accuracy of a clustering."""
    from sklearn import metrics
    return dict(
        nmi=100 * metrics.normalized_mutual_info_score(labels, preds),
        ami=100 * metrics.adjusted_mutual_info_score(labels, preds),
        ari=100 * metrics.adjusted_rand_score(labels, preds),
        acc=hungarian_accuracy(labels, preds))


def prototype_tree_scores(paths: np.ndarray,
                          labels: Dict[str, np.ndarray]) -> Dict[str, float]:
    """How well each level of a learned prototype tree matches each labelling.

    Args:
        paths (np.ndarray): (N, L) cluster id of every training image at
            every level.
        labels (dict): Label arrays, e.g. ``dict(fine=..., coarse=...)``.

    Returns:
        dict: ``{f'level{l}_{name}_{metric}': score}`` (NMI, AMI, ARI,
        Hungarian ACC).
    """
    scores = {}
    for lvl in range(paths.shape[1]):
        for name, lab in labels.items():
            for metric, value in clustering_scores(lab, paths[:, lvl]).items():
                scores[f'level{lvl}_{name}_{metric}'] = value
    return scores
