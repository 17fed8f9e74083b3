from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class HIRLNeck(BaseModule):
    """One MLP per prototype level, applied in parallel to the projection.

    Each MLP is ``(Linear no-bias -> norm -> ReLU) x (num_layers - 1)``
    then ``Linear``; every output is L2-normalised.

    Args:
        in_channels (int): Width of the base method's projection.
        num_levels (int): Number of prototype levels.
        num_layers (int): Linear layers per MLP. Defaults to 2.
        hid_channels (int, optional): Hidden width. Defaults to
            ``in_channels``.
        out_channels (int, optional): Output width. Defaults to
            ``in_channels``.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN1d')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 num_levels: int,
                 num_layers: int = 2,
                 hid_channels: Optional[int] = None,
                 out_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN1d'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if num_layers < 1:
            raise ValueError(f'num_layers must be >= 1, got {num_layers}')
        hid_channels = hid_channels or in_channels
        out_channels = out_channels or in_channels
        self.mlps = nn.ModuleList()
        for _ in range(num_levels):
            layers, width = [], in_channels
            for _ in range(num_layers - 1):
                layers += [
                    nn.Linear(width, hid_channels, bias=False),
                    build_norm_layer(norm_cfg, hid_channels)[1],
                    nn.ReLU(inplace=True)
                ]
                width = hid_channels
            layers.append(nn.Linear(width, out_channels))
            self.mlps.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(B, C) projection -> L normalised (B, C_out) embeddings."""
        return [F.normalize(mlp(x), dim=1) for mlp in self.mlps]
