from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

from .functional import clustering_scores, weighted_knn


def _levels(results: List[dict]) -> Dict[str, np.ndarray]:
    """Label arrays per level: 'fine', plus 'coarse' when every sample has
    one."""
    levels = dict(fine=np.array([r['label'] for r in results]))
    if all(r['coarse'] is not None for r in results):
        levels['coarse'] = np.array([r['coarse'] for r in results])
    return levels


class _FeatureMetric(BaseMetric):
    """Collects ``feat``, the fine and the coarse label of every sample."""

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            coarse = ds.get('coarse_label')
            self.results.append(
                dict(
                    feat=ds['feat'].cpu(),
                    label=int(ds['gt_label']),
                    coarse=None if coarse is None else int(coarse),
                    knn_bank=bool(ds.get('knn_bank', False))))


@METRICS.register_module()
class HiRLKNNMetric(_FeatureMetric):
    """Weighted kNN top-1/top-5 of the reference protocol, per label level.

    Use with :class:`HiRLKNNDataset` (bank = training split, query = test
    split) and :class:`HiRLFeatureModel`. Features of all ranks are gathered
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
            raise ValueError('HiRLKNNMetric needs memory-bank and query '
                             'samples: evaluate on a HiRLKNNDataset.')
        bank_feats = torch.stack([r['feat'] for r in bank])
        query_feats = torch.stack([r['feat'] for r in query])
        bank_levels, query_levels = _levels(bank), _levels(query)
        metrics = {}
        for level in query_levels.keys() & bank_levels.keys():
            accs = weighted_knn(bank_feats,
                                torch.from_numpy(bank_levels[level]),
                                query_feats,
                                torch.from_numpy(query_levels[level]), self.ks,
                                self.temperature, self.topk, self.chunk_size)
            metrics.update({f'{k}_{level}': v for k, v in accs.items()})
        return metrics


@METRICS.register_module()
class HiRLClusteringMetric(_FeatureMetric):
    """k-means (faiss) on the features: NMI, AMI, ARI, ACC per label level.

    The number of clusters of a level is its number of classes. Samples
    flagged as a kNN memory bank are ignored, so one test run can report
    both metrics.

    Args:
        seed (int): k-means seed. Defaults to 0.
        kmeans_cfg (dict, optional): More :func:`hierarchical_kmeans`
            arguments. Defaults to k-means++ initialisation.
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
        from hirl_mm.utils import hierarchical_kmeans
        results = [r for r in results if not r['knn_bank']]
        feats = torch.stack([r['feat'] for r in results]).numpy()
        metrics = {}
        for level, labels in _levels(results).items():
            k = len(np.unique(labels))
            preds = hierarchical_kmeans(
                feats, [k], seed=self.seed, **self.kmeans_cfg).assignments
            metrics.update({
                f'{name}_{level}': value
                for name, value in clustering_scores(labels, preds).items()
            })
        return metrics


@METRICS.register_module()
class HiRLCoarseAccuracy(BaseMetric):
    """Top-1 accuracy at the coarse level of a classifier's fine predictions.

    The predicted fine class is mapped through the data set's
    ``fine_to_coarse`` (``dataset_meta``) and compared with the sample's
    ``coarse_label``.
    """

    default_prefix = 'coarse'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            self.results.append(
                (int(ds['pred_label']), int(ds['coarse_label'])))

    def compute_metrics(self, results: List[tuple]) -> Dict[str, float]:
        mapping = (self.dataset_meta or {}).get('fine_to_coarse')
        if mapping is None:
            raise ValueError('HiRLCoarseAccuracy needs a data set with '
                             '`fine_to_coarse` in its metainfo.')
        mapping = np.asarray(mapping)
        pred, target = (np.array(x) for x in zip(*results))
        return dict(top1=100.0 * float((mapping[pred] == target).mean()))
