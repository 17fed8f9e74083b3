"""What the feature metrics share: each sample's feature and labels."""
from typing import Dict, List, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric


def label_levels(results: List[dict]) -> Dict[str, np.ndarray]:
    """Label arrays per level: 'fine', plus 'coarse' when every sample has
    one."""
    levels = dict(fine=np.array([r['label'] for r in results]))
    if all(r['coarse'] is not None for r in results):
        levels['coarse'] = np.array([r['coarse'] for r in results])
    return levels


class FeatureMetric(BaseMetric):
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
