from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS


def dino_loss(student_logits: Sequence[torch.Tensor],
              teacher_logits: Sequence[torch.Tensor], center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO's cross-view self-distillation cross-entropy.

    For every teacher view q and every student view v != q: the
    cross-entropy between ``softmax((t_q - c) / T_t)`` and
    ``softmax(s_v / T_s)``, averaged over the batch, then over the pairs.
    The logits are promoted to float32 (stable softmax under AMP).

    Args:
        student_logits (Sequence[torch.Tensor]): One ``(B, K)`` tensor per
            student view, the teacher's views first, in the same order.
        teacher_logits (Sequence[torch.Tensor]): One ``(B, K)`` tensor per
            teacher (global) view.
        center (torch.Tensor): ``(1, K)`` centre c of the teacher logits.
        student_temp (float): Student temperature T_s.
        teacher_temp (float): Teacher temperature T_t.

    Returns:
        torch.Tensor: The scalar loss.
    """
    if len(student_logits) < 2 or len(teacher_logits) < 1 or \
            len(teacher_logits) > len(student_logits):
        raise ValueError(
            'The DINO loss needs >= 2 student views and 1 to '
            f'{len(student_logits)} teacher views, got '
            f'{len(student_logits)} student / {len(teacher_logits)} '
            'teacher views.')
    teacher = [
        F.softmax((t.float() - center) / teacher_temp, dim=-1)
        for t in teacher_logits
    ]
    student = [
        F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits
    ]
    total, pairs = 0., 0
    for q, t in enumerate(teacher):
        for v, s in enumerate(student):
            if v == q:  # the same view is not a pair
                continue
            total = total + torch.sum(-t * s, dim=-1).mean()
            pairs += 1
    return total / pairs


@MODELS.register_module()
class DINOLoss(nn.Module):
    """DINO's cross-view self-distillation loss (:func:`dino_loss`).

    The centre and the temperatures are the head's (a buffer and a
    schedule), so they come with each call.
    """

    def forward(self, student_logits: Sequence[torch.Tensor],
                teacher_logits: Sequence[torch.Tensor], center: torch.Tensor,
                student_temp: float, teacher_temp: float) -> torch.Tensor:
        """See :func:`dino_loss`."""
        return dino_loss(student_logits, teacher_logits, center, student_temp,
                         teacher_temp)
