from .functional import (CLUSTERING_METRICS, DENSE_MATCHING_MAX_ENTRIES,
                         Contingency, adjusted_rand_index, clustering_scores,
                         contingency, hungarian_accuracy, matching_accuracy,
                         normalized_mutual_info, prototype_tree_scores,
                         weighted_knn)
from .metrics import ClusteringMetric, CoarseAccuracy, KNNAccuracy
from .prototype_stats import (dataset_labels, prototype_stats_report,
                              prototype_stats_table,
                              prototype_tree_diagnostics)

__all__ = [
    'CLUSTERING_METRICS', 'DENSE_MATCHING_MAX_ENTRIES', 'ClusteringMetric',
    'CoarseAccuracy', 'Contingency', 'KNNAccuracy', 'adjusted_rand_index',
    'clustering_scores', 'contingency', 'dataset_labels', 'hungarian_accuracy',
    'matching_accuracy', 'normalized_mutual_info', 'prototype_stats_report',
    'prototype_stats_table', 'prototype_tree_diagnostics',
    'prototype_tree_scores', 'weighted_knn'
]
