from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS


def cross_scale_loss(scores: torch.Tensor, codes: Sequence[torch.Tensor],
                     temperature: float) -> torch.Tensor:
    """SS-PRL's cross-scale (local-to-global) loss of one pyramid scale.

    For every patch view v and every coded global view: the cross-entropy
    between the global view's Sinkhorn codes q and
    ``softmax(scores[v] / temperature)``, averaged over the images, then
    over the (patch view, global view) pairs, as the reference
    (WesleyHsieh0806/SS-PRL, main_SSPRL.py, lines 456-470).

    Args:
        scores (torch.Tensor): ``(V, B, K_global)`` global-prototype scores
            predicted from each of the ``V`` patch views of the scale
            (``(B, K_global)``: one view).
        codes (Sequence[torch.Tensor]): ``(B, K_global)`` Sinkhorn codes of
            each global view used for assignment.
        temperature (float): Softmax temperature.

    Returns:
        torch.Tensor: The scalar loss.
    """
    if scores.dim() not in (2, 3) or not codes or \
            any(q.shape != scores.shape[-2:] for q in codes):
        raise ValueError(
            'cross_scale_loss needs (V, B, K) or (B, K) scores and (B, K) '
            'codes, got '
            f'{tuple(scores.shape)} and {[tuple(q.shape) for q in codes]}.')
    log_p = F.log_softmax(scores / temperature, dim=-1)  # V x B x K
    return torch.stack([-(q * log_p).sum(-1).mean() for q in codes]).mean()


@MODELS.register_module()
class CrossScaleLoss(nn.Module):
    """SS-PRL's cross-scale loss of one pyramid scale
    (:func:`cross_scale_loss`); the temperature is the head's."""

    def forward(self, scores: torch.Tensor, codes: Sequence[torch.Tensor],
                temperature: float) -> torch.Tensor:
        """See :func:`cross_scale_loss`."""
        return cross_scale_loss(scores, codes, temperature)
