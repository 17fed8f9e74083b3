"""HCSC's selective coding terms (Guo et al., CVPR 2022).

``concentrations`` below are per-prototype temperatures: the clustering's
concentrations phi already multiplied by the InfoNCE temperature, as the
reference implementation scales them (gyfastas/HCSC ``pretrain.py``
``run_hkmeans``: ``density = T * density / density.mean()``).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

DROP_MODES = ('drop', 'zero')


def _check_drop_mode(drop_mode: str) -> None:
    if drop_mode not in DROP_MODES:
        raise ValueError(
            f"drop_mode must be 'drop' or 'zero', got {drop_mode!r}")


def selection_keep_probability(
    keys: torch.Tensor,
    centroids: torch.Tensor,
    concentrations: torch.Tensor,
    targets: torch.Tensor,
    clamp: Tuple[float, float] = (0., 0.999)
) -> torch.Tensor:
    """``1 - p(target_i | key_j)`` for every query i and candidate j.

    ``p(c | k) = softmax_c(k . c / phi_c)``; the keep probability is
    clamped to ``clamp``, as the reference clamps its Bernoulli
    probabilities: ``(0, 0.999)`` for queue negatives, ``(1e-4, 0.999)``
    for prototypes (gyfastas/HCSC ``hcsc/hcsc.py``, ``sample_neg_instance``
    and ``sample_neg_protos``), so even the least related candidate is
    dropped with probability 0.001.

    Args:
        keys (torch.Tensor): ``(K, D)`` candidates (queue keys or
            prototypes).
        centroids (torch.Tensor): ``(M, D)`` prototypes of the level.
        concentrations (torch.Tensor): ``(M, )`` their temperatures phi.
        targets (torch.Tensor): ``(B, )`` the prototype of each query.
        clamp (tuple[float, float]): Bounds of the keep probability.
            Defaults to (0., 0.999).

    Returns:
        torch.Tensor: ``(B, K)`` keep probabilities.
    """
    prob = torch.softmax(keys @ centroids.t() / concentrations, dim=1)  # K x M
    return (1 - prob[:, targets].t()).clamp(*clamp)


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
    _check_drop_mode(drop_mode)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    mask = torch.cat([keep.new_ones(len(keep), 1), keep], dim=1)
    if drop_mode == 'drop':
        logits = logits.masked_fill(~mask, float('-inf'))
    else:
        logits = logits * mask
    return F.cross_entropy(logits,
                           logits.new_zeros(len(logits), dtype=torch.long))


def prototype_candidates(targets: torch.Tensor,
                         num_prototypes: int) -> torch.Tensor:
    """``(M, )`` bool: the prototypes no query of the batch is assigned to.

    Args:
        targets (torch.Tensor): ``(B, )`` the positive prototype of each
            query.
        num_prototypes (int): Prototypes M of the level.
    """
    if len(targets) and int(targets.max()) >= num_prototypes:
        raise ValueError(
            f'prototype target {int(targets.max())} out of range for a '
            f'level of {num_prototypes} prototypes.')
    candidate = torch.ones(
        num_prototypes, dtype=torch.bool, device=targets.device)
    candidate[targets] = False
    return candidate


def prototype_negatives(
        targets: torch.Tensor,
        num_prototypes: int,
        centroids: Optional[torch.Tensor] = None,
        parent_centroids: Optional[torch.Tensor] = None,
        parent_concentrations: Optional[torch.Tensor] = None,
        parent_targets: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The negative prototypes of each query for prototypical coding.

    Prototypes positive for any query of the batch are never negatives
    (:func:`prototype_candidates`). Below the top level (``parent_*``
    given) each other prototype c_j is kept with probability
    ``1 - softmax_u(c_j . u / phi'_u)[parent of the positive]`` over the
    next level's prototypes u, clamped to (1e-4, 0.999) (one Bernoulli draw
    per query and prototype, from torch's global generator).

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
        torch.Tensor: ``(B, M)`` bool, True for a negative; one row per
        query (its own memory, never a shared view).
    """
    parent = (centroids, parent_centroids, parent_concentrations,
              parent_targets)
    if any(p is None for p in parent) and any(p is not None for p in parent):
        raise ValueError('prototype_negatives needs all of centroids, '
                         'parent_centroids, parent_concentrations and '
                         'parent_targets, or none of them (top level).')
    candidate = prototype_candidates(targets, num_prototypes)
    keep = candidate.repeat(len(targets), 1)  # B x M
    if parent_centroids is not None:
        prob = selection_keep_probability(centroids, parent_centroids,
                                          parent_concentrations,
                                          parent_targets, (1e-4, 0.999))
        keep &= torch.bernoulli(prob).bool()
    return keep


def prototype_logits(query: torch.Tensor,
                     centroids: torch.Tensor,
                     concentrations: torch.Tensor,
                     targets: torch.Tensor,
                     negatives: torch.Tensor,
                     drop_mode: str = 'drop') -> torch.Tensor:
    """The logits of prototypical selective coding, ``(B, M)``.

    ``q_i . c / phi_c`` at query i's positive and at its negatives; the
    prototypes positive for another query of the batch are ``-inf`` (never
    candidates, as in the reference). A candidate not drawn as a negative is
    ``-inf`` in 'drop' mode and 0 in 'zero' mode (the reference multiplies
    its logit by 0, gyfastas/HCSC ``hcsc/hcsc.py`` ``get_protos``).

    Args:
        query (torch.Tensor): ``(B, D)`` normalised queries.
        centroids (torch.Tensor): ``(M, D)`` prototypes of the level.
        concentrations (torch.Tensor): ``(M, )`` their temperatures phi.
        targets (torch.Tensor): ``(B, )`` the positive prototype of each
            query.
        negatives (torch.Tensor): ``(B, M)`` bool from
            :func:`prototype_negatives`; not modified.
        drop_mode (str): 'drop' or 'zero', as :func:`instance_selective_loss`.
            Defaults to 'drop'.

    Returns:
        torch.Tensor: ``(B, M)`` logits.
    """
    _check_drop_mode(drop_mode)
    if negatives.shape != (len(query), len(centroids)):
        raise ValueError(
            f'negatives of shape {tuple(negatives.shape)} for {len(query)} '
            f'queries and {len(centroids)} prototypes.')
    logits = query @ centroids.t() / concentrations  # B x M
    rows = torch.arange(len(query), device=query.device)
    # a copy: each row admits its own positive only
    used = negatives.clone()
    used[rows, targets] = True
    if drop_mode == 'zero':
        dropped = prototype_candidates(targets, len(centroids)) & ~used
        logits = logits.masked_fill(dropped, 0.)
        used = used | dropped
    return logits.masked_fill(~used, float('-inf'))


def prototype_selective_loss(query: torch.Tensor,
                             centroids: torch.Tensor,
                             concentrations: torch.Tensor,
                             targets: torch.Tensor,
                             negatives: torch.Tensor,
                             drop_mode: str = 'drop') -> torch.Tensor:
    """Prototypical selective coding: cross-entropy of
    :func:`prototype_logits` to each query's positive prototype.

    Args:
        query (torch.Tensor): ``(B, D)`` normalised queries.
        centroids (torch.Tensor): ``(M, D)`` prototypes of the level.
        concentrations (torch.Tensor): ``(M, )`` their temperatures phi.
        targets (torch.Tensor): ``(B, )`` the positive prototype of each
            query.
        negatives (torch.Tensor): ``(B, M)`` bool from
            :func:`prototype_negatives`; not modified.
        drop_mode (str): 'drop' or 'zero'. Defaults to 'drop'.

    Returns:
        torch.Tensor: The scalar loss.
    """
    return F.cross_entropy(
        prototype_logits(query, centroids, concentrations, targets, negatives,
                         drop_mode), targets)
