from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.dist import all_reduce
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


@MODELS.register_module()
class DINOHead(BaseModule):
    """DINO's self-distillation loss with centring and sharpening.

    For every teacher view q (the global crops) and every student view
    v != q: cross-entropy between softmax((t_q - c) / T_t) and
    softmax(s_v / T_s), averaged over the batch and over the pairs
    (``loss``, :class:`DINOLoss`). The teacher temperature T_t rises
    linearly (per epoch) from ``warmup_teacher_temp`` to ``teacher_temp``
    over ``warmup_teacher_temp_epochs`` epochs (``np.linspace`` as the
    reference), then stays. After each loss the centre c moves towards the
    mean teacher logits (over all ranks): c <- m c + (1 - m) mean(t).

    Args:
        out_channels (int): Number of logits.
        student_temp (float): Student temperature. Defaults to 0.1.
        teacher_temp (float): Teacher temperature after the warm-up.
            Defaults to 0.07.
        warmup_teacher_temp (float): Teacher temperature at epoch 0.
            Defaults to 0.04.
        warmup_teacher_temp_epochs (int): Warm-up epochs. Defaults to 30.
        center_momentum (float): Momentum m of the centre. Defaults to 0.9.
        loss (dict): Config of the loss. Defaults to
            ``dict(type='DINOLoss')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 out_channels: int,
                 student_temp: float = 0.1,
                 teacher_temp: float = 0.07,
                 warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int = 30,
                 center_momentum: float = 0.9,
                 loss: dict = dict(type='DINOLoss'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if min(student_temp, teacher_temp, warmup_teacher_temp) <= 0:
            raise ValueError('DINOHead temperatures must be positive.')
        if warmup_teacher_temp_epochs < 0:
            raise ValueError('warmup_teacher_temp_epochs must be >= 0, got '
                             f'{warmup_teacher_temp_epochs}.')
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.center_momentum = center_momentum
        self.register_buffer('center', torch.zeros(1, out_channels))
        self.loss_module = MODELS.build(loss)

    @staticmethod
    def warmup_value(start: float, end: float, warmup_epochs: int,
                     epoch: int) -> float:
        """``np.linspace(start, end, warmup_epochs)[epoch]``, then ``end``."""
        if epoch < warmup_epochs:
            return float(np.linspace(start, end, warmup_epochs)[epoch])
        return float(end)

    def teacher_temp_at(self, epoch: int) -> float:
        """The teacher temperature of an epoch."""
        return self.warmup_value(self.warmup_teacher_temp, self.teacher_temp,
                                 self.warmup_teacher_temp_epochs, epoch)

    def loss(self,
             student_logits: Sequence[torch.Tensor],
             teacher_logits: Sequence[torch.Tensor],
             epoch: int = 0) -> torch.Tensor:
        """Cross-view self-distillation loss; updates the centre.

        Args:
            student_logits (Sequence[Tensor]): One (B, K) tensor per student
                view, the teacher's views first, in the same order.
            teacher_logits (Sequence[Tensor]): One (B, K) tensor per teacher
                (global) view.
            epoch (int): Current epoch (teacher temperature). Defaults to 0.

        Returns:
            Tensor: The loss.
        """
        loss = self.loss_module(student_logits, teacher_logits, self.center,
                                self.student_temp, self.teacher_temp_at(epoch))
        self.update_center(torch.cat(list(teacher_logits)))
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the mean teacher logits, (N, K), over all ranks."""
        self.center.copy_(
            self._ema(self.center, teacher_logits, self.center_momentum))

    @staticmethod
    def _ema(center: torch.Tensor, logits: torch.Tensor,
             momentum: float) -> torch.Tensor:
        # mean over every axis but the last (images, and tokens if any)
        batch_center = logits.detach().float().reshape(-1,
                                                       logits.size(-1)).mean(
                                                           0, keepdim=True)
        all_reduce(batch_center, op='mean')
        return center * momentum + batch_center * (1 - momentum)
