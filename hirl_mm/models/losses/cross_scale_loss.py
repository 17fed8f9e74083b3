from typing import Sequence

import torch
import torch.nn.functional as F


def cross_scale_loss(scores: torch.Tensor, codes: Sequence[torch.Tensor],
                     temperature: float) -> torch.Tensor:
    """SS-PRL's cross-scale (local-to-global) loss of one pyramid scale.

    The cross-entropy between the Sinkhorn codes q of each global view and
    ``softmax(scores / temperature)``, averaged over the images, then over
    the coded views.

    Args:
        scores (torch.Tensor): ``(B, K_global)`` global-prototype scores
            predicted from the scale's patches.
        codes (Sequence[torch.Tensor]): ``(B, K_global)`` Sinkhorn codes of
            each global view used for assignment.
        temperature (float): Softmax temperature.

    Returns:
        torch.Tensor: The scalar loss.
    """
    log_p = F.log_softmax(scores / temperature, dim=1)
    return torch.stack([-(q * log_p).sum(1).mean() for q in codes]).mean()
