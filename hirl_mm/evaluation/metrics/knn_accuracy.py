from typing import Dict, List, Optional, Sequence

import torch
from mmpretrain.registry import METRICS

from ..functional import weighted_knn
from .feature_metric import FeatureMetric, label_levels


@METRICS.register_module()
class KNNAccuracy(FeatureMetric):
    """Weighted kNN top-1/top-5 of the reference protocol, per label level.

    Use with :class:`KNNDataset` (bank = training split, query = test
    split) and :class:`PooledFeatureModel`. Features of all ranks are gathered
    by mmengine before :meth:`compute_metrics`; the vote is chunked.

    Args:
        ks (Sequence[int]): Neighbour counts. Defaults to (10, 20, 100, 200).
        temperature (float): Vote weight ``exp(sim / T)``. Defaults to 0.07.
        topk (Sequence[int]): Reported accuracies. Defaults to (1, 5).
        chunk_size (int): Queries per chunk. Defaults to 1024.
    """

    default_prefix = 'knn'

    def __init__(self,
                 ks: Sequence[int] = (10, 20, 100, 200),
                 temperature: float = 0.07,
                 topk: Sequence[int] = (1, 5),
                 chunk_size: int = 1024,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ks, self.topk = tuple(ks), tuple(topk)
        self.temperature = temperature
        self.chunk_size = chunk_size

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        bank = [r for r in results if r['knn_bank']]
        query = [r for r in results if not r['knn_bank']]
        if not bank or not query:
            raise ValueError('KNNAccuracy needs memory-bank and query '
                             'samples: evaluate on a KNNDataset.')
        bank_feats = torch.stack([r['feat'] for r in bank])
        query_feats = torch.stack([r['feat'] for r in query])
        bank_levels, query_levels = label_levels(bank), label_levels(query)
        metrics = {}
        for level in query_levels.keys() & bank_levels.keys():
            accs = weighted_knn(bank_feats,
                                torch.from_numpy(bank_levels[level]),
                                query_feats,
                                torch.from_numpy(query_levels[level]), self.ks,
                                self.temperature, self.topk, self.chunk_size)
            metrics.update({f'{k}_{level}': v for k, v in accs.items()})
        return metrics
