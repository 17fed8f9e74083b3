from typing import Dict

import numpy as np
import torch
from mmengine.runner import Runner

from hirl_mm.utils import pooled_embedding


@torch.no_grad()
def extract_backbone_features(model, dataloader) -> Dict[str, np.ndarray]:
    """Globally pooled last-stage backbone features and labels of a loader.

    Args:
        model: A self-supervised algorithm (or :class:`HiRL`): its
            ``data_preprocessor`` and ``extract_feat`` are used.
        dataloader: A built loader or a loader config.

    Returns:
        dict: ``feats`` (N, C) L2-normalised, ``labels`` (N, ) and, when the
        samples carry one, ``coarse_labels`` (N, ).
    """
    if isinstance(dataloader, dict):
        dataloader = Runner.build_dataloader(dataloader)
    was_training = model.training
    model.eval()
    feats, labels, coarse = [], [], []
    for data in dataloader:
        data = model.data_preprocessor(data, False)
        out = model.extract_feat(data['inputs'])[-1]
        feats.append(pooled_embedding(out).cpu())
        for ds in data['data_samples']:
            labels.append(int(ds.gt_label))
            if 'coarse_label' in ds:
                coarse.append(int(ds.coarse_label))
    model.train(was_training)
    result = dict(feats=torch.cat(feats).numpy(), labels=np.array(labels))
    if len(coarse) == len(labels):
        result['coarse_labels'] = np.array(coarse)
    return result
