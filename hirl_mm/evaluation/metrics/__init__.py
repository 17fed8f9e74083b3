from .clustering_metric import ClusteringMetric
from .coarse_accuracy import CoarseAccuracy
from .feature_metric import FeatureMetric
from .knn_accuracy import KNNAccuracy

__all__ = [
    'ClusteringMetric', 'CoarseAccuracy', 'FeatureMetric', 'KNNAccuracy'
]
