from .features import extract_backbone_features
from .functional import (clustering_scores, hungarian_accuracy,
                         prototype_tree_scores, weighted_knn)
from .metrics import HiRLClusteringMetric, HiRLCoarseAccuracy, HiRLKNNMetric

__all__ = [
    'HiRLClusteringMetric', 'HiRLCoarseAccuracy', 'HiRLKNNMetric',
    'clustering_scores', 'extract_backbone_features', 'hungarian_accuracy',
    'prototype_tree_scores', 'weighted_knn'
]
