"""HCSC's selective coding terms (Guo et al., CVPR 2022).

``concentrations`` below are per-prototype temperatures: the clustering's
concentrations phi already multiplied by the InfoNCE temperature, as the
reference implementation scales them.
"""
from typing import Optional

import torch
import torch.nn.functional as F


def selection_keep_probability(keys: torch.Tensor, centroids: torch.Tensor,
                               concentrations: torch.Tensor,
                               targets: torch.Tensor) -> torch.Tensor:
    """``1 - p(target_i | key_j)`` for every query i and candidate j.

    ``p(c | k) = softmax_c(k . c / phi_c)``, clamped at 0.999 so that no
    candidate is certainly dropped.

    Args:
        keys (torch.Tensor): ``(K, D)`` candidates (queue keys or
            prototypes).
        centroids (torch.Tensor): ``(M, D)`` prototypes of the level.
        concentrations (torch.Tensor): ``(M, )`` their temperatures phi.
        targets (torch.Tensor): ``(B, )`` the prototype of each query.

    Returns:
        torch.Tensor: ``(B, K)`` keep probabilities.
    """
    prob = torch.softmax(keys @ centroids.t() / concentrations, dim=1)  # K x M
    return 1 - prob[:, targets].t().clamp(max=0.999)


def instance_selective_loss(l_pos: torch.Tensor,
                            l_neg: torch.Tensor,
                            keep: torch.Tensor,
                            temperature: float,
                            drop_mode: str = 'drop') -> torch.Tensor:
    """Instance-wise selective coding: InfoNCE over the kept negatives.

    Args:
        l_pos (torch.Tensor): ``(B, 1)`` query-key similarities.
        l_neg (torch.Tensor): ``(B, K)`` query-queue similarities.
        keep (torch.Tensor): ``(B, K)`` bool, the queue negatives kept
            (drawn from :func:`selection_keep_probability`).
        temperature (float): InfoNCE temperature.
        drop_mode (str): How a discarded negative leaves the InfoNCE:
            'drop' removes it from the denominator (the paper's reading),
            'zero' multiplies its logit by 0 (the reference code's: exp(0)
            stays in the denominator). Defaults to 'drop'.

    Returns:
        torch.Tensor: The scalar loss.
    """
    if drop_mode not in ('drop', 'zero'):
        raise ValueError(
            f"drop_mode must be 'drop' or 'zero', got {drop_mode!r}")
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    mask = torch.cat([keep.new_ones(len(keep), 1), keep], dim=1)
    if drop_mode == 'drop':
        logits = logits.masked_fill(~mask, float('-inf'))
    else:
        logits = logits * mask
    return F.cross_entropy(logits,
                           logits.new_zeros(len(logits), dtype=torch.long))


def prototype_negatives(
        targets: torch.Tensor,
        num_prototypes: int,
        centroids: Optional[torch.Tensor] = None,
        parent_centroids: Optional[torch.Tensor] = None,
        parent_concentrations: Optional[torch.Tensor] = None,
        parent_targets: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The negative prototypes of each query for prototypical coding.

    Prototypes positive for any query of the batch are never negatives.
    Below the top level (``parent_*`` given) each other prototype c_j is
    kept with probability ``1 - softmax_u(c_j . u / phi'_u)[parent of the
    positive]`` over the next level's prototypes u (one Bernoulli draw per
    query and prototype, from torch's global generator).

    Args:
        targets (torch.Tensor): ``(B, )`` the positive prototype of each
            query at this level.
        num_prototypes (int): Prototypes M of this level.
        centroids (torch.Tensor, optional): ``(M, D)`` this level's
            prototypes. Defaults to None (top level).
        parent_centroids (torch.Tensor, optional): ``(M', D)`` the next
            level's prototypes. Defaults to None.
        parent_concentrations (torch.Tensor, optional): ``(M', )`` their
            temperatures. Defaults to None.
        parent_targets (torch.Tensor, optional): ``(B, )`` the positive's
            parent. Defaults to None.

    Returns:
        torch.Tensor: ``(B, M)`` bool, True for a negative. At the top
        level it is an expanded view of one ``(M, )`` row (issue 15).
    """
    parent = (centroids, parent_centroids, parent_concentrations,
              parent_targets)
    if any(p is None for p in parent) and any(p is not None for p in parent):
        raise ValueError('prototype_negatives needs all of centroids, '
                         'parent_centroids, parent_concentrations and '
                         'parent_targets, or none of them (top level).')
    candidate = torch.ones(
        num_prototypes, dtype=torch.bool, device=targets.device)
    candidate[targets] = False
    keep = candidate.expand(len(targets), num_prototypes)
    if parent_centroids is not None:
        prob = selection_keep_probability(centroids, parent_centroids,
                                          parent_concentrations,
                                          parent_targets)
        keep = keep & torch.bernoulli(prob).bool()
    return keep


def prototype_selective_loss(query: torch.Tensor, centroids: torch.Tensor,
                             concentrations: torch.Tensor,
                             targets: torch.Tensor,
                             negatives: torch.Tensor) -> torch.Tensor:
    """Prototypical selective coding: cross-entropy over the positive
    prototype and the selected negative prototypes.

    Args:
        query (torch.Tensor): ``(B, D)`` normalised queries.
        centroids (torch.Tensor): ``(M, D)`` prototypes of the level.
        concentrations (torch.Tensor): ``(M, )`` their temperatures phi.
        targets (torch.Tensor): ``(B, )`` the positive prototype of each
            query.
        negatives (torch.Tensor): ``(B, M)`` bool from
            :func:`prototype_negatives`. Written in place: the positives are
            set to True (through an expanded view, in every row).

    Returns:
        torch.Tensor: The scalar loss.
    """
    logits = query @ centroids.t() / concentrations  # B x M
    # In place, as HCSC has always done: through the top level's expanded
    # view this admits every batch positive in every row (issue 15 decides).
    mask = negatives
    mask[torch.arange(len(query)), targets] = True
    return F.cross_entropy(logits.masked_fill(~mask, float('-inf')), targets)
