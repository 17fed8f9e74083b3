"""ViTDet's simple feature pyramid for MMDetection ."""
from typing import Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """A feature pyramid from a plain ViT's single stride-16 map.

    Li et al., *Exploring Plain Vision Transformer Backbones for Object
    Detection* (ViTDet): the last feature map is up-sampled by transposed
    convs (x4, x2), kept (x1) or max-pooled (x0.5), each followed by a 1 x 1
    and a 3 x 3 conv; one more max-pool gives the extra coarsest level.

    Args:
        in_channels (int): Channels of the ViT feature map. Defaults to 768.
        out_channels (int): Channels of every level. Defaults to 256.
        scale_factors (Sequence[float]): Up/down-sampling of each level,
            from 4, 2, 1, 0.5. Defaults to (4.0, 2.0, 1.0, 0.5).
        num_outs (int): Levels out; one more than ``scale_factors`` adds a
            max-pooled level. Defaults to 5.
        norm_cfg (dict): Norm of the convs. Defaults to
            ``dict(type='mmpretrain.LN2d', eps=1e-6)`` (ViTDet's LN).
        init_cfg (dict, optional): Defaults to None.
    """

    def __init__(self,
                 in_channels: int = 768,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_outs: int = 5,
                 norm_cfg: dict = dict(type='mmpretrain.LN2d', eps=1e-6),
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        if num_outs not in (len(scale_factors), len(scale_factors) + 1):
            raise ValueError(f'num_outs={num_outs} must be len(scale_factors)'
                             f' ({len(scale_factors)}) or one more.')
        self.num_outs = num_outs
        self.stages = nn.ModuleList()
        for scale in scale_factors:
            if scale == 4.0:
                layers = [
                    nn.ConvTranspose2d(in_channels, in_channels // 2, 2, 2),
                    build_norm_layer(norm_cfg, in_channels // 2)[1],
                    nn.GELU(),
                    nn.ConvTranspose2d(in_channels // 2, in_channels // 4, 2,
                                       2)
                ]
                channels = in_channels // 4
            elif scale == 2.0:
                layers = [
                    nn.ConvTranspose2d(in_channels, in_channels // 2, 2, 2)
                ]
                channels = in_channels // 2
            elif scale == 1.0:
                layers, channels = [], in_channels
            elif scale == 0.5:
                layers, channels = [nn.MaxPool2d(2, 2)], in_channels
            else:
                raise ValueError(f'scale factor {scale} is not one of 4, 2, '
                                 '1, 0.5.')
            layers += [
                ConvModule(channels, out_channels, 1, norm_cfg=norm_cfg),
                ConvModule(
                    out_channels,
                    out_channels,
                    3,
                    padding=1,
                    norm_cfg=norm_cfg)
            ]
            self.stages.append(nn.Sequential(*layers))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        x = inputs[-1]  # N x C x H/16 x W/16
        outs = [stage(x) for stage in self.stages]
        if self.num_outs > len(outs):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
