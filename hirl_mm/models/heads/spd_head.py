from typing import List, Optional, Sequence

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class SPDHead(BaseModule):
    """Semantic path discrimination (SPD) head of HIRL.

    A path P = (c_0, ..., c_{L-1}) is scored against the level embeddings z
    by ``s(z, P) = prod_l (1 + cos(z_l, c_l)) / 2``. The positive path is the
    image's own; negatives are the ancestor paths of ``num_neg_path`` level-0
    clusters drawn uniformly with replacement (:meth:`sample_negatives`),
    minus those equal to the positive path; ``loss`` scores them
    (:class:`SPDLoss`).

    Args:
        num_neg_path (int): Negative paths per sample. Defaults to 1000.
        eps (float, optional): ``eps`` of the loss, set here by configs that
            predate ``loss``. Defaults to None: the loss config's own.
        loss (dict): Config of the loss. Defaults to
            ``dict(type='SPDLoss')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 num_neg_path: int = 1000,
                 eps: Optional[float] = None,
                 loss: dict = dict(type='SPDLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.num_neg_path = num_neg_path
        if eps is not None:
            loss = dict(loss, eps=eps)
        self.loss_module = MODELS.build(loss)

    def loss(self, embeddings: Sequence[torch.Tensor], pos_paths: torch.Tensor,
             centroids: List[torch.Tensor],
             neg_paths: torch.Tensor) -> torch.Tensor:
        """Compute the SPD loss.

        Args:
            embeddings (Sequence[Tensor]): L normalised (B, D) embeddings.
            pos_paths (Tensor): (B, L) cluster ids of each image.
            centroids (list[Tensor]): L normalised (M_l, D) prototypes.
            neg_paths (Tensor): (B, K, L) candidate negative paths.

        Returns:
            Tensor: the scalar loss.
        """
        return self.loss_module(embeddings, pos_paths, centroids, neg_paths)

    def sample_negatives(self, batch_size: int, num_leaves: int,
                         device: torch.device) -> torch.Tensor:
        """Uniform level-0 ids with replacement, (B, K)."""
        return torch.randint(
            num_leaves, (batch_size, self.num_neg_path), device=device)
