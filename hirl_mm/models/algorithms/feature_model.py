from typing import List, Optional

import torch
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from hirl_mm.utils import pooled_embedding


@MODELS.register_module()
class PooledFeatureModel(BaseModel):
    """A backbone that predicts its pooled, L2-normalised features.

    The evaluation model of the kNN and clustering benchmarks: ``tools/test.py
    CONFIG CKPT`` loads the ``backbone.*`` weights of any self-supervised
    checkpoint into it and every test sample gets a ``feat`` field.

    Args:
        backbone (dict): Backbone config.
        out_index (int): Which backbone output to use. Defaults to -1.
        data_preprocessor (dict, optional): Defaults to
            ``ClsDataPreprocessor``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 out_index: int = -1,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
        data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.out_index = out_index

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        return pooled_embedding(self.backbone(inputs)[self.out_index])

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        feats = self.extract_feat(inputs)
        if mode == 'tensor':
            return feats
        if mode != 'predict':
            raise RuntimeError(f'{type(self).__name__} only evaluates; '
                               f'mode={mode!r} is not supported.')
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(feats))]
        for ds, feat in zip(data_samples, feats):
            ds.set_field(feat, 'feat', field_type='data')
        return data_samples
