from typing import Dict, List, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS


@METRICS.register_module()
class CoarseAccuracy(BaseMetric):
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
            raise ValueError('CoarseAccuracy needs a data set with '
                             '`fine_to_coarse` in its metainfo.')
        mapping = np.asarray(mapping)
        pred, target = (np.array(x) for x in zip(*results))
        return dict(top1=100.0 * float((mapping[pred] == target).mean()))
