from .functional import (clustering_scores, hungarian_accuracy,
                         prototype_tree_scores, weighted_knn)
from .metrics import ClusteringMetric, CoarseAccuracy, KNNAccuracy

__all__ = [
    'ClusteringMetric', 'CoarseAccuracy', 'KNNAccuracy', 'clustering_scores',
    'hungarian_accuracy', 'prototype_tree_scores', 'weighted_knn'
]
