from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models import MoCo
from mmpretrain.models.utils import batch_shuffle_ddp, batch_unshuffle_ddp
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..losses import (instance_selective_loss, prototype_negatives,
                      prototype_selective_loss, selection_keep_probability)
from ..utils import (HierarchicalPrototypeMixin, keep_own_buffers,
                     sample_indices)

_MIN_TEMPERATURE = 1e-3


@MODELS.register_module()
class HCSC(HierarchicalPrototypeMixin, MoCo):
    """HCSC: Hierarchical Contrastive Selective Coding (CVPR 2022).

    MoCo v2 with a tree of prototypes (built by
    :class:`HierarchicalPrototypeHook` from the momentum encoder, with
    per-cluster concentrations phi). After
    the warm-up the loss is ``sum_l L_ins^l + (1 / L) sum_l L_proto^l``:

    - instance-wise selective coding: for level l a queue key k_j stays a
      negative of query i with probability ``1 - p_l(c_l(i) | k_j)``, where
      ``p_l(c | k) = softmax_c(k . c / phi_c)``, clamped to [0, 0.999]
      (:func:`instance_selective_loss`);
    - prototypical selective coding: the positive is the query's prototype,
      negatives are the prototypes no sample of the batch is assigned to;
      below the top level a negative c_j is kept with probability
      ``1 - softmax_u(c_j . u / phi'_u)[parent of the positive]`` over the
      next level's prototypes u, clamped to [1e-4, 0.999]
      (:func:`prototype_selective_loss`).

    Before the first clustering it is plain MoCo (``loss``). Views after
    the query and the key are local crops (multi-crop): each is another query
    of the same key and keeps the query's drawn queue negatives. As the
    reference (gyfastas/HCSC ``pretrain.py``, ``train``), their terms are
    summed, one per local crop and level: ``loss_local`` (MoCo, before the
    clustering), ``loss_ins_local = sum_crops sum_l L_ins^l`` and
    ``loss_proto_local = sum_crops (1 / L) sum_l L_proto^l``.

    Args:
        num_clusters (Sequence[int]): Prototypes per level, finest first.
        drop_mode (str): How a discarded negative (queue key or prototype)
            leaves its cross-entropy: 'drop' removes it from the
            denominator (the paper's reading, default); 'zero' multiplies
            its logit by 0 (the reference code's, in both terms: exp(0)
            stays in the denominator).
        **kwargs: :class:`mmpretrain.models.MoCo` arguments.
    """

    def __init__(self,
                 num_clusters: Sequence[int],
                 drop_mode: str = 'drop',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        keep_own_buffers(self)  # encoder_k's own BN statistics
        if drop_mode not in ('drop', 'zero'):
            raise ValueError(
                f"drop_mode must be 'drop' or 'zero', got {drop_mode!r}")
        self.drop_mode = drop_mode
        self.init_prototypes(num_clusters)

    @torch.no_grad()
    def extract_proto_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised momentum-encoder projections, (B, D)."""
        return F.normalize(self.encoder_k(inputs)[0], dim=1)

    @property
    def temperature(self) -> float:
        return self.head.temperature

    def proto_negatives(self, paths: torch.Tensor, lvl: int) -> torch.Tensor:
        """:func:`prototype_negatives` of level ``lvl``, (B, M).

        Args:
            paths (Tensor): (B, L) the queries' prototypes at every level.
            lvl (int): The level.
        """
        protos = self.prototypes
        # the stored tree's sizes: a checkpoint may hold another tree
        size = protos.cluster_sizes[lvl]
        if lvl + 1 == protos.num_levels:
            return prototype_negatives(paths[:, lvl], size)
        parent_conc = self.level_temperatures(lvl + 1)
        return prototype_negatives(paths[:, lvl], size, protos.centroids[lvl],
                                   protos.centroids[lvl + 1], parent_conc,
                                   paths[:, lvl + 1])

    def level_temperatures(self, lvl: int) -> torch.Tensor:
        """``(M, )`` temperatures of level ``lvl``'s prototypes: the
        InfoNCE temperature times their concentrations, at least 1e-3 (the
        reference's floor in its instance selection, gyfastas/HCSC
        ``hcsc/hcsc.py`` l.157; applied to every term here, where the
        reference would divide by a zero phi: docs/fidelity.md)."""
        return (
            self.temperature *
            self.prototypes.concentrations[lvl]).clamp_min(_MIN_TEMPERATURE)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.neck(self.backbone(images))[0], dim=1)

    def _selective_terms(self, q: torch.Tensor, k: torch.Tensor,
                         queue: torch.Tensor, paths: torch.Tensor,
                         keeps: List[torch.Tensor]) -> tuple:
        """``(sum_l L_ins^l, (1 / L) sum_l L_proto^l)`` of queries ``q``."""
        protos = self.prototypes
        l_pos = (q * k).sum(1, keepdim=True)  # B x 1
        l_neg = q @ queue  # B x K
        loss_ins, loss_proto = 0., 0.
        for lvl, keep in enumerate(keeps):
            loss_ins = loss_ins + instance_selective_loss(
                l_pos, l_neg, keep, self.temperature, self.drop_mode)
            loss_proto = loss_proto + prototype_selective_loss(
                q, protos.centroids[lvl],
                self.level_temperatures(lvl), paths[:, lvl],
                self.proto_negatives(paths, lvl), self.drop_mode)
        return loss_ins, loss_proto / len(keeps)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Views: query, key, then optional local crops (multi-crop).

        Each local crop is another query of the same key; its terms are
        summed over the local crops (as the reference) and logged as
        ``*_local``.
        """
        im_q, im_k = inputs[0], inputs[1]
        q = self._encode(im_q)  # B x D
        # one pass per local crop: their sizes differ
        local_qs = [self._encode(x) for x in inputs[2:]]
        with torch.no_grad():
            self.encoder_k.update_parameters(
                nn.Sequential(self.backbone, self.neck))
            im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
            k = F.normalize(self.encoder_k(im_k)[0], dim=1)
            k = batch_unshuffle_ddp(k, idx_unshuffle)
        # the prototypes' features of the trained images, for the hook's
        # feature_source='memory_bank' (a no-op otherwise)
        self.record_proto_feat(k, sample_indices(data_samples, k.device))
        queue = self.queue.clone().detach()  # D x K

        protos = self.prototypes
        if not protos.ready:
            losses = dict(loss=self._moco_loss(q, k, queue))
            if local_qs:
                losses['loss_local'] = sum(
                    self._moco_loss(lq, k, queue) for lq in local_qs)
        else:
            paths = protos.paths(sample_indices(data_samples,
                                                q.device))  # B x L
            # the kept queue negatives depend on the image, not the crop
            keeps = [
                torch.bernoulli(
                    selection_keep_probability(queue.t(),
                                               protos.centroids[lvl],
                                               self.level_temperatures(lvl),
                                               paths[:, lvl])).bool()
                for lvl in range(protos.num_levels)
            ]
            losses = dict(
                zip(('loss_ins', 'loss_proto'),
                    self._selective_terms(q, k, queue, paths, keeps)))
            if local_qs:
                terms = [
                    self._selective_terms(lq, k, queue, paths, keeps)
                    for lq in local_qs
                ]
                losses['loss_ins_local'] = sum(t[0] for t in terms)
                losses['loss_proto_local'] = sum(t[1] for t in terms)
        self._dequeue_and_enqueue(k)
        return losses

    def _moco_loss(self, q: torch.Tensor, k: torch.Tensor,
                   queue: torch.Tensor) -> torch.Tensor:
        return self.head.loss((q * k).sum(1, keepdim=True), q @ queue)
