from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CrossScaleHead(BaseModule):
    """SS-PRL's cross-scale correlation learner of one pyramid scale.

    For every patch view of an image, the scale's prototype scores of its
    ``g x g`` cells are averaged and L2-normalised; ``prototypes``, a
    bias-free linear layer from the scale's prototypes to the global ones,
    turns them into global-prototype scores, which (divided by the
    temperature) predict the global views' Sinkhorn codes. As the
    reference's ``l2g_ptypes`` it is a prototype matrix: its rows are
    renormalised to unit norm before every forward (the scores are
    cosines) and, being named ``prototypes``, it is frozen with the other
    prototypes by ``SwAVHook``'s ``frozen_layers_cfg``.

    Args:
        num_local (int): Prototypes of the scale.
        num_global (int): Global prototypes.
        temperature (float): Softmax temperature. Defaults to 0.1.
        loss (dict): Config of the loss. Defaults to
            ``dict(type='CrossScaleLoss')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 num_local: int,
                 num_global: int,
                 temperature: float = 0.1,
                 loss: dict = dict(type='CrossScaleLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.temperature = temperature
        self.prototypes = nn.Linear(num_local, num_global, bias=False)
        self.loss_module = MODELS.build(loss)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Rescale every row of ``prototypes`` to unit norm, in place."""
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def forward(self, patch_logits: torch.Tensor, batch_size: int,
                num_views: int) -> torch.Tensor:
        """Global-prototype scores of every patch view of every image.

        Args:
            patch_logits (torch.Tensor): ``(V * P * B) x K_local`` scores of
                the ``V`` views of the ``P = g * g`` cells of each of the
                ``B`` images, view by view, then cell by cell, in blocks of
                ``B`` (the order of :class:`PyramidPatches`).
            batch_size (int): ``B``.
            num_views (int): ``V``.

        Returns:
            torch.Tensor: ``V x B x K_global``.
        """
        rows, k = patch_logits.shape
        if rows % (batch_size * num_views):
            raise ValueError(
                f'{rows} patch rows are not a multiple of num_views x batch '
                f'size = {num_views} x {batch_size}.')
        self.normalize_prototypes()
        x = patch_logits.view(num_views, -1, batch_size, k).mean(1)
        return self.prototypes(F.normalize(x, dim=-1))  # V x B x K_global

    def loss(self, patch_logits: torch.Tensor, codes: List[torch.Tensor],
             num_views: int) -> torch.Tensor:
        """Cross entropy to the global codes, averaged over the patch views
        and the coded global views (:class:`CrossScaleLoss`).

        Args:
            patch_logits (torch.Tensor): See :meth:`forward`.
            codes (List[torch.Tensor]): ``B x K_global`` Sinkhorn codes of
                each global view used for assignment.
            num_views (int): Views per patch.

        Returns:
            torch.Tensor: The scalar loss.
        """
        scores = self(patch_logits, codes[0].shape[0], num_views)
        return self.loss_module(scores, codes, self.temperature)
