from .checkpoint import (check_checkpoint, mmengine_safe_globals,
                         register_safe_globals)
from .dist import setup_cpu_distributed
from .hierarchical_kmeans import (HierarchicalClustering, check_num_clusters,
                                  cluster_concentration, hierarchical_kmeans)
from .pooling import global_pool, pooled_embedding

__all__ = [
    'HierarchicalClustering', 'check_checkpoint', 'check_num_clusters',
    'cluster_concentration', 'hierarchical_kmeans', 'mmengine_safe_globals',
    'register_safe_globals', 'setup_cpu_distributed',
    'global_pool', 'pooled_embedding'
]
