from typing import List, Sequence

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..losses import spd_loss


@MODELS.register_module()
class SPDHead(BaseModule):
    """Semantic path discrimination (SPD) head of HIRL.

    A path P = (c_0, ..., c_{L-1}) is scored against the level embeddings z
    by ``s(z, P) = prod_l (1 + cos(z_l, c_l)) / 2``. The positive path is the
    image's own; negatives are the ancestor paths of ``num_neg_path`` level-0
    clusters drawn uniformly with replacement (:meth:`sample_negatives`),
    minus those equal to the positive path; the loss is :func:`spd_loss`.

    Args:
        num_neg_path (int): Negative paths per sample. Defaults to 1000.
        eps (float): Added inside both logs. Defaults to 1e-6.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 num_neg_path: int = 1000,
                 eps: float = 1e-6,
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.num_neg_path = num_neg_path
        self.eps = eps

    def loss(self, embeddings: Sequence[torch.Tensor], pos_paths: torch.Tensor,
             centroids: List[torch.Tensor],
             neg_paths: torch.Tensor) -> torch.Tensor:
        """Compute the SPD loss (:func:`spd_loss`).

        Args:
            embeddings (Sequence[Tensor]): L normalised (B, D) embeddings.
            pos_paths (Tensor): (B, L) cluster ids of each image.
            centroids (list[Tensor]): L normalised (M_l, D) prototypes.
            neg_paths (Tensor): (B, K, L) candidate negative paths.

        Returns:
            Tensor: the scalar loss.
        """
        return spd_loss(embeddings, pos_paths, centroids, neg_paths, self.eps)

    def sample_negatives(self, batch_size: int, num_leaves: int,
                         device: torch.device) -> torch.Tensor:
        """Uniform level-0 ids with replacement, (B, K)."""
        return torch.randint(
            num_leaves, (batch_size, self.num_neg_path), device=device)
