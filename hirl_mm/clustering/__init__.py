from .hierarchical_kmeans import (HierarchicalClustering, check_num_clusters,
                                  cluster_concentration, hierarchical_kmeans,
                                  kmeans_plusplus)

__all__ = [
    'HierarchicalClustering', 'check_num_clusters', 'cluster_concentration',
    'hierarchical_kmeans', 'kmeans_plusplus'
]
