from .hierarchical_kmeans import (HierarchicalClustering, check_num_clusters,
                                  cluster_concentration, hierarchical_kmeans)
from .init import kmeans_plusplus
from .rows import normalize_rows_

__all__ = [
    'HierarchicalClustering', 'check_num_clusters', 'cluster_concentration',
    'hierarchical_kmeans', 'kmeans_plusplus', 'normalize_rows_'
]
