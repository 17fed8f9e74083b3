from .hierarchical_kmeans import (HierarchicalClustering, check_num_clusters,
                                  cluster_concentration, hierarchical_kmeans,
                                  kmeans_plusplus)
from .lloyd import normalize_rows_

__all__ = [
    'HierarchicalClustering', 'check_num_clusters', 'cluster_concentration',
    'hierarchical_kmeans', 'kmeans_plusplus', 'normalize_rows_'
]
