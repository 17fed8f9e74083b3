from typing import Dict, List, Optional

import numpy as np
import torch
from mmpretrain.registry import METRICS

from ..functional import clustering_scores
from .feature_metric import FeatureMetric, label_levels


@METRICS.register_module()
class ClusteringMetric(FeatureMetric):
    """k-means (faiss) on the features: NMI, AMI, ARI, ACC per label level.

    The number of clusters of a level is its number of classes. Samples
    flagged as a kNN memory bank are ignored, so one test run can report
    both metrics.

    Args:
        seed (int): k-means seed. Defaults to 0.
        kmeans_cfg (dict, optional): More :func:`hierarchical_kmeans`
            arguments. Defaults to k-means++ initialisation. The metric
            runs on rank 0 alone (``compute_metrics``), so the k-means is
            never a collective (``distributed=False``).
    """

    default_prefix = 'clustering'

    def __init__(self,
                 seed: int = 0,
                 kmeans_cfg: Optional[dict] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.seed = seed
        self.kmeans_cfg = dict(kmeans_cfg or dict(init='kmeans++'))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        from hirl_mm.clustering import hierarchical_kmeans
        results = [r for r in results if not r['knn_bank']]
        feats = torch.stack([r['feat'] for r in results]).numpy()
        metrics = {}
        for level, labels in label_levels(results).items():
            k = len(np.unique(labels))
            preds = hierarchical_kmeans(
                feats, [k],
                seed=self.seed,
                distributed=False,
                **self.kmeans_cfg).assignments
            metrics.update({
                f'{name}_{level}': value
                for name, value in clustering_scores(labels, preds).items()
            })
        return metrics
