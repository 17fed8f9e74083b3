from typing import List, Sequence

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class HiRLSPDHead(BaseModule):
    """Semantic path discrimination (SPD) loss of HIRL.

    A path P = (c_0, ..., c_{L-1}) is scored against the level embeddings z
    by ``s(z, P) = prod_l (1 + cos(z_l, c_l)) / 2``. The positive path is the
    image's own; negatives are the ancestor paths of ``num_neg_path`` level-0
    clusters drawn uniformly with replacement, minus those equal to the
    positive path::

        L = mean_b [ -log(s(z, P+) + eps)
                     - mean_{kept P-} log(1 - s(z, P-) + eps) ] / 2

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

    @staticmethod
    def path_scores(cos: torch.Tensor) -> torch.Tensor:
        """Cosines (..., L) -> path similarity (...)."""
        return ((1 + cos) / 2).prod(dim=-1)

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
        # Similarity to every prototype, then gather: B x M_l is far smaller
        # than B x K x D when K negatives are gathered per sample.
        pos_cos, neg_cos = [], []
        for lvl, (z, cent) in enumerate(zip(embeddings, centroids)):
            sim = z @ cent.t()  # B x M_l
            pos_cos.append(sim.gather(1, pos_paths[:, lvl:lvl + 1])[:, 0])
            neg_cos.append(sim.gather(1, neg_paths[..., lvl]))  # B x K
        pos_score = self.path_scores(torch.stack(pos_cos, dim=-1))  # B
        neg_score = self.path_scores(torch.stack(neg_cos, dim=-1))  # B x K

        keep = (neg_paths != pos_paths[:, None]).any(dim=-1).float()
        loss_pos = -torch.log(pos_score + self.eps)
        loss_neg = (-torch.log(1 - neg_score + self.eps) * keep).sum(1) \
            / keep.sum(1).clamp(min=1)
        return ((loss_pos + loss_neg) / 2).mean()

    def sample_negatives(self, batch_size: int, num_leaves: int,
                         device: torch.device) -> torch.Tensor:
        """Uniform level-0 ids with replacement, (B, K)."""
        return torch.randint(
            num_leaves, (batch_size, self.num_neg_path), device=device)
