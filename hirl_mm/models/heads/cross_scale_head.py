from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..losses import cross_scale_loss


@MODELS.register_module()
class CrossScaleHead(BaseModule):
    """SS-PRL's cross-scale correlation learner of one pyramid scale.

    Per image, the prototype scores of all patch views of the scale are
    averaged, L2-normalised and mapped by a bias-free linear layer from the
    scale's prototypes to the global prototypes; the result (divided by the
    temperature) is trained to predict the global views' Sinkhorn codes.

    Args:
        num_local (int): Prototypes of the scale.
        num_global (int): Global prototypes.
        temperature (float): Softmax temperature. Defaults to 0.1.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 num_local: int,
                 num_global: int,
                 temperature: float = 0.1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.temperature = temperature
        self.linear = nn.Linear(num_local, num_global, bias=False)

    def forward(self, patch_logits: torch.Tensor,
                batch_size: int) -> torch.Tensor:
        """Global-prototype scores of every image.

        Args:
            patch_logits (torch.Tensor): ``(P * B) x K_local`` scores of the
                ``P`` patch views of each of the ``B`` images, in blocks of
                ``B`` (one block per view and cell).
            batch_size (int): ``B``.

        Returns:
            torch.Tensor: ``B x K_global``.
        """
        if patch_logits.shape[0] % batch_size:
            raise ValueError(f'{patch_logits.shape[0]} patch rows are not a '
                             f'multiple of the batch size {batch_size}.')
        x = patch_logits.view(-1, batch_size, patch_logits.shape[1])
        x = F.normalize(x.mean(0), dim=1)  # B x K_local
        return self.linear(x)  # B x K_global

    def loss(self, patch_logits: torch.Tensor,
             codes: List[torch.Tensor]) -> torch.Tensor:
        """Cross entropy to the global codes, averaged over the coded views
        (:func:`cross_scale_loss`).

        Args:
            patch_logits (torch.Tensor): See :meth:`forward`.
            codes (List[torch.Tensor]): ``B x K_global`` Sinkhorn codes of
                each global view used for assignment.

        Returns:
            torch.Tensor: The scalar loss.
        """
        return cross_scale_loss(
            self(patch_logits, codes[0].shape[0]), codes, self.temperature)
