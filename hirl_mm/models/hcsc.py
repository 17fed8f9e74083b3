from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models import MoCo
from mmpretrain.models.utils import batch_shuffle_ddp, batch_unshuffle_ddp
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from .prototypes import HierarchicalPrototypes


@MODELS.register_module()
class HiRLHCSC(MoCo):
    """HCSC: Hierarchical Contrastive Selective Coding (CVPR 2022).

    MoCo v2 with a tree of prototypes (built by :class:`HiRLPrototypeHook`
    from the momentum encoder, with per-cluster concentrations phi). After
    the warm-up the loss is ``sum_l L_ins^l + (1 / L) sum_l L_proto^l``:

    - instance-wise selective coding: for level l a queue key k_j stays a
      negative of query i with probability ``1 - p_l(c_l(i) | k_j)``, where
      ``p_l(c | k) = softmax_c(k . c / phi_c)`` (clamped at 0.999);
    - prototypical selective coding: the positive is the query's prototype,
      negatives are the prototypes no sample of the batch is assigned to;
      below the top level a negative c_j is kept with probability
      ``1 - softmax_u(c_j . u / phi'_u)[parent of the positive]`` over the
      next level's prototypes u.

    Before the first clustering it is plain MoCo (``loss``).

    Args:
        num_clusters (Sequence[int]): Prototypes per level, finest first.
        drop_mode (str): How a discarded queue negative leaves the InfoNCE:
            'drop' removes it from the denominator (the paper's reading,
            default); 'zero' multiplies its logit by 0 (the reference
            code's: exp(0) stays in the denominator).
        **kwargs: :class:`mmpretrain.models.MoCo` arguments.
    """

    def __init__(self,
                 num_clusters: Sequence[int],
                 drop_mode: str = 'drop',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if drop_mode not in ('drop', 'zero'):
            raise ValueError(
                f"drop_mode must be 'drop' or 'zero', got {drop_mode!r}")
        self.drop_mode = drop_mode
        self.prototypes = HierarchicalPrototypes(num_clusters)

    @property
    def num_clusters(self) -> List[int]:
        return self.prototypes.num_clusters

    @torch.no_grad()
    def extract_proto_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised momentum-encoder projections, (B, D)."""
        return F.normalize(self.encoder_k(inputs)[0], dim=1)

    @property
    def temperature(self) -> float:
        return self.head.temperature

    def keep_probability(self, keys: torch.Tensor, centroids: torch.Tensor,
                         conc: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
        """``1 - p(target_i | key_j)`` for every pair, (B, K).

        Args:
            keys (Tensor): (K, D) candidates (queue keys or prototypes).
            centroids (Tensor): (M, D) prototypes of the level.
            conc (Tensor): (M, ) their concentrations phi.
            targets (Tensor): (B, ) the prototype of each query.
        """
        prob = torch.softmax(keys @ centroids.t() / conc, dim=1)  # K x M
        return 1 - prob[:, targets].t().clamp(max=0.999)

    def instance_loss(self, l_pos: torch.Tensor, l_neg: torch.Tensor,
                      keep: torch.Tensor) -> torch.Tensor:
        """InfoNCE over the positive and the kept queue negatives."""
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        mask = torch.cat([keep.new_ones(len(keep), 1), keep], dim=1)
        if self.drop_mode == 'drop':
            logits = logits.masked_fill(~mask, float('-inf'))
        else:
            logits = logits * mask
        return F.cross_entropy(logits,
                               logits.new_zeros(len(logits), dtype=torch.long))

    def proto_negatives(self, paths: torch.Tensor, lvl: int) -> torch.Tensor:
        """Which prototypes of level ``lvl`` are negatives per query, (B, M).

        Prototypes positive for any sample of the batch are never negatives;
        below the top level the others are sampled by
        :meth:`keep_probability` against the positive's parent.
        """
        protos = self.prototypes
        num = protos.num_clusters[lvl]
        candidate = torch.ones(num, dtype=torch.bool, device=paths.device)
        candidate[paths[:, lvl]] = False
        keep = candidate.expand(len(paths), num)
        if lvl + 1 < protos.num_levels:
            prob = self.keep_probability(
                protos.centroids[lvl], protos.centroids[lvl + 1],
                self.temperature * protos.concentrations[lvl + 1],
                paths[:, lvl + 1])
            keep = keep & torch.bernoulli(prob).bool()
        return keep

    def proto_loss(self, q: torch.Tensor, paths: torch.Tensor,
                   lvl: int) -> torch.Tensor:
        protos = self.prototypes
        conc = self.temperature * protos.concentrations[lvl]
        logits = q @ protos.centroids[lvl].t() / conc  # B x M
        mask = self.proto_negatives(paths, lvl)
        mask[torch.arange(len(q)), paths[:, lvl]] = True
        return F.cross_entropy(
            logits.masked_fill(~mask, float('-inf')), paths[:, lvl])

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        im_q, im_k = inputs[0], inputs[1]
        q = F.normalize(self.neck(self.backbone(im_q))[0], dim=1)  # B x D
        with torch.no_grad():
            self.encoder_k.update_parameters(
                nn.Sequential(self.backbone, self.neck))
            im_k, idx_unshuffle = batch_shuffle_ddp(im_k)
            k = F.normalize(self.encoder_k(im_k)[0], dim=1)
            k = batch_unshuffle_ddp(k, idx_unshuffle)
        queue = self.queue.clone().detach()  # D x K
        l_pos = (q * k).sum(1, keepdim=True)  # B x 1
        l_neg = q @ queue  # B x K

        protos = self.prototypes
        if not protos.ready:
            losses = dict(loss=self.head.loss(l_pos, l_neg))
        else:
            sample_idx = torch.as_tensor(
                [ds.sample_idx for ds in data_samples], device=q.device)
            paths = protos.paths(sample_idx)  # B x L
            loss_ins, loss_proto = 0., 0.
            for lvl in range(protos.num_levels):
                keep = torch.bernoulli(
                    self.keep_probability(
                        queue.t(), protos.centroids[lvl],
                        self.temperature * protos.concentrations[lvl],
                        paths[:, lvl])).bool()
                loss_ins = loss_ins + self.instance_loss(l_pos, l_neg, keep)
                loss_proto = loss_proto + self.proto_loss(q, paths, lvl)
            losses = dict(
                loss_ins=loss_ins, loss_proto=loss_proto / protos.num_levels)
        self._dequeue_and_enqueue(k)
        return losses
