from typing import Sequence

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS


def path_scores(cos: torch.Tensor) -> torch.Tensor:
    """Path similarity ``s(z, P) = prod_l (1 + cos(z_l, c_l)) / 2``.

    Args:
        cos (torch.Tensor): ``(..., L)`` cosines between the level
            embeddings and the path's prototypes, one per level.

    Returns:
        torch.Tensor: ``(...)`` scores in [0, 1].
    """
    return ((1 + cos) / 2).prod(dim=-1)


def spd_loss(embeddings: Sequence[torch.Tensor],
             pos_paths: torch.Tensor,
             centroids: Sequence[torch.Tensor],
             neg_paths: torch.Tensor,
             eps: float = 1e-6) -> torch.Tensor:
    """HIRL's semantic path discrimination (SPD) loss.

    The positive path is each image's own; a candidate negative path equal
    to the positive one is left out of that image's mean::

        L = mean_b [ -log(s(z, P+) + eps)
                     - mean_{kept P-} log(1 - s(z, P-) + eps) ] / 2

    An image whose candidates are all its own path keeps the positive term
    only.

    Args:
        embeddings (Sequence[torch.Tensor]): L normalised ``(B, D)`` level
            embeddings.
        pos_paths (torch.Tensor): ``(B, L)`` cluster ids of each image.
        centroids (Sequence[torch.Tensor]): L normalised ``(M_l, D)``
            prototypes.
        neg_paths (torch.Tensor): ``(B, K, L)`` candidate negative paths.
        eps (float): Added inside both logs. Defaults to 1e-6.

    Returns:
        torch.Tensor: The scalar loss.
    """
    # Similarity to every prototype, then gather: B x M_l is far smaller
    # than B x K x D when K negatives are gathered per sample.
    pos_cos, neg_cos = [], []
    for lvl, (z, cent) in enumerate(zip(embeddings, centroids)):
        sim = z @ cent.t()  # B x M_l
        pos_cos.append(sim.gather(1, pos_paths[:, lvl:lvl + 1])[:, 0])
        neg_cos.append(sim.gather(1, neg_paths[..., lvl]))  # B x K
    pos_score = path_scores(torch.stack(pos_cos, dim=-1))  # B
    neg_score = path_scores(torch.stack(neg_cos, dim=-1))  # B x K

    keep = (neg_paths != pos_paths[:, None]).any(dim=-1).to(neg_score)
    loss_pos = -torch.log(pos_score + eps)
    # divided by (kept + eps), as the reference: 0 when none is kept
    loss_neg = (-torch.log(1 - neg_score + eps) * keep).sum(1) \
        / (keep.sum(1) + eps)
    return ((loss_pos + loss_neg) / 2).mean()


@MODELS.register_module()
class SPDLoss(nn.Module):
    """HIRL's semantic path discrimination loss (:func:`spd_loss`).

    Args:
        eps (float): Added inside both logs. Defaults to 1e-6.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, embeddings: Sequence[torch.Tensor],
                pos_paths: torch.Tensor, centroids: Sequence[torch.Tensor],
                neg_paths: torch.Tensor) -> torch.Tensor:
        """The loss of L ``(B, D)`` level embeddings against ``(B, L)``
        positive and ``(B, K, L)`` candidate negative paths through L
        ``(M_l, D)`` prototypes (see :func:`spd_loss`)."""
        return spd_loss(embeddings, pos_paths, centroids, neg_paths, self.eps)
