from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from hirl_mm.utils import global_pool


@MODELS.register_module()
class DINONeck(BaseModule):
    """The projection head of DINO / iBOT.

    MLP (Linear-GELU x (num_layers - 1), Linear) to a bottleneck, L2
    normalisation, then a weight-normalised linear layer without bias to
    ``out_channels`` logits. With ``norm_last_layer`` the norm of every row
    of the last layer is fixed to 1 (DINO's ``weight_g`` frozen at 1).

    The first output is the image-level bottleneck (the class token's for
    token input), so that :class:`HIRL` captures it as the projection and
    the prototype hook clusters it.

    Args:
        in_channels (int): Input width (the backbone's embedding width).
        hid_channels (int): Hidden width of the MLP. Defaults to 2048.
        bottleneck_channels (int): Bottleneck width. Defaults to 256.
        out_channels (int): Number of logits. Defaults to 65536.
        num_layers (int): Linear layers of the MLP. Defaults to 3.
        norm_last_layer (bool): Fix the row norms of the last layer to 1.
            Defaults to True.
        init_cfg (dict | list, optional): Initialization config. Defaults to
            truncated normal (std 0.02) linear weights and zero biases.
    """

    def __init__(
        self,
        in_channels: int,
        hid_channels: int = 2048,
        bottleneck_channels: int = 256,
        out_channels: int = 65536,
        num_layers: int = 3,
        norm_last_layer: bool = True,
        init_cfg: Optional[Union[dict, list]] = dict(
            type='TruncNormal', layer='Linear', std=0.02, bias=0.)
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_layers < 1:
            raise ValueError(
                f'DINONeck needs num_layers >= 1, got {num_layers}.')
        layers, channels = [], in_channels
        for _ in range(num_layers - 1):
            layers += [nn.Linear(channels, hid_channels), nn.GELU()]
            channels = hid_channels
        layers.append(nn.Linear(channels, bottleneck_channels))
        self.mlp = nn.Sequential(*layers)
        # weight normalisation: direction (last_layer.weight) x row norm
        self.last_layer = nn.Linear(
            bottleneck_channels, out_channels, bias=False)
        self.last_layer_norm = nn.Parameter(
            torch.ones(out_channels, 1), requires_grad=not norm_last_layer)
        # set by the algorithm while the last layer is frozen (no grad, so
        # the optimizer skips it as DINO does)
        self.freeze_last_layer = False

    def forward(
        self, x: Union[torch.Tensor, Sequence[torch.Tensor]]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Project backbone features.

        Args:
            x (Tensor | Sequence[Tensor]): Backbone output (the last one is
                used): (B, C) vectors, (B, L, C) tokens with the class token
                first, or (B, C, H, W) maps (averaged).

        Returns:
            tuple: The image-level bottleneck, (B, bottleneck_channels), and
            the logits of every input vector / token, (B, out_channels) or
            (B, L, out_channels).
        """
        if isinstance(x, (list, tuple)):
            x = x[-1]
        if x.dim() == 4:
            x = global_pool(x)
        z = self.mlp(x)  # B x D or B x L x D
        weight = self.last_layer_norm * F.normalize(
            self.last_layer.weight, dim=1)
        if self.freeze_last_layer:
            weight = weight.detach()
        logits = F.linear(F.normalize(z, dim=-1), weight)
        return (z[:, 0] if z.dim() == 3 else z), logits
