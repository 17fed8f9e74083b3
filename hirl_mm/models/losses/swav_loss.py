from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce
from mmpretrain.models.losses import SwAVLoss
from mmpretrain.registry import MODELS


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, num_iters: int,
             epsilon: float) -> torch.Tensor:
    """Sinkhorn-Knopp codes of the rows of ``scores`` over all ranks.

    Equal use of the prototypes is enforced over the global batch: the
    total and, in every iteration, the per-prototype row sums are summed
    over the ranks, as facebookresearch/swav (``main_swav.py``,
    ``distributed_sinkhorn``), HIRL's SwAV runner and SS-PRL
    (``main_SSPRL.py``) do. MMPretrain's ``distributed_sinkhorn`` sums the
    row sums only when one of them is 0, so there each GPU balances its own
    batch. The global number of rows is summed too (one collective with
    the total), so the ranks may hold different numbers of rows.

    Args:
        scores (torch.Tensor): ``B x K`` prototype scores of this rank.
        num_iters (int): Sinkhorn-Knopp iterations.
        epsilon (float): Entropy regularisation.

    Returns:
        torch.Tensor: ``B x K`` codes, each row summing to 1.
    """
    q = torch.exp(scores / epsilon).t()  # K x B
    num_prototypes = q.shape[0]
    totals = torch.stack([q.sum(), q.new_tensor(q.shape[1])])
    all_reduce(totals)  # [sum of q, number of rows] over the ranks
    q /= totals[0]
    num_rows = totals[1]
    for _ in range(num_iters):
        row_sums = q.sum(dim=1, keepdim=True)  # K x 1
        all_reduce(row_sums)
        q /= row_sums
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= num_rows
    return (q * num_rows).t()


@MODELS.register_module()
class GlobalSwAVLoss(SwAVLoss):
    """MMPretrain's ``SwAVLoss`` with the codes of the global batch.

    The same swapped prediction, queue and arguments as ``SwAVLoss``; the
    codes come from :func:`sinkhorn`, which balances the prototypes over
    the rows of all ranks (queue included) in every iteration, as the
    references do, instead of over each GPU's batch.
    """

    @torch.no_grad()
    def codes(self,
              embedding: torch.Tensor) -> Tuple[List[torch.Tensor], bool]:
        """Codes of each view in ``crops_for_assign``, leaving the queue as
        it is.

        Args:
            embedding (torch.Tensor): ``(V * B) x D`` projections, view by
                view.

        Returns:
            Tuple[List[torch.Tensor], bool]: The ``B x K`` codes of each
            assigned view, and whether the queue took part (it does from
            the first time one is full).
        """
        weight = F.normalize(self.prototypes.weight, dim=1)
        bs = embedding.shape[0] // sum(self.num_crops)
        codes, use_queue = [], self.use_queue
        for i, crop_id in enumerate(self.crops_for_assign):
            scores = embedding[bs * crop_id:bs * (crop_id + 1)] @ weight.t()
            if self.queue is not None:
                use_queue = use_queue or not torch.all(self.queue[i, -1] == 0)
                if use_queue:
                    scores = torch.cat((self.queue[i] @ weight.t(), scores))
            codes.append(
                sinkhorn(scores, self.sinkhorn_iterations, self.epsilon)[-bs:])
        return codes, use_queue

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Swapped prediction of the codes.

        Args:
            x (torch.Tensor): ``(V * B) x D`` projections, view by view.

        Returns:
            torch.Tensor: The loss.
        """
        with torch.no_grad():
            self.prototypes.weight.copy_(
                F.normalize(self.prototypes.weight, dim=1))
        output = self.prototypes(x)  # (V * B) x K
        embedding = x.detach()
        codes, self.use_queue = self.codes(embedding)
        bs = embedding.shape[0] // sum(self.num_crops)
        if self.queue is not None:
            with torch.no_grad():
                for i, crop_id in enumerate(self.crops_for_assign):
                    self.queue[i, bs:] = self.queue[i, :-bs].clone()
                    self.queue[i, :bs] = embedding[crop_id * bs:(crop_id + 1) *
                                                   bs]
        num_views = sum(self.num_crops)
        loss = 0
        for q, crop_id in zip(codes, self.crops_for_assign):
            subloss = 0
            for v in np.delete(np.arange(num_views), crop_id):
                log_p = F.log_softmax(
                    output[bs * v:bs * (v + 1)] / self.temperature, dim=1)
                subloss -= torch.mean(torch.sum(q * log_p, dim=1))
            loss += subloss / (num_views - 1)
        return loss / len(self.crops_for_assign)
