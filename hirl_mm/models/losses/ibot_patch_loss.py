from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS


def ibot_patch_loss(student_patch: Sequence[torch.Tensor],
                    teacher_patch: Sequence[torch.Tensor],
                    masks: Sequence[torch.Tensor],
                    center: torch.Tensor,
                    student_temp: float,
                    teacher_temp: float,
                    loss_weight: float = 1.0) -> torch.Tensor:
    """iBOT's masked-patch self-distillation cross-entropy.

    For every global view: the cross-entropy between the teacher's centred,
    sharpened patch distributions (unmasked image) and the student's
    (masked image) at the masked positions only; per image the sum over its
    masked patches divided by their number (an image without mask counts
    as 0), averaged over the images, then over the views.

    Args:
        student_patch (Sequence[torch.Tensor]): ``(B, N, K)`` per global
            view, from the masked image.
        teacher_patch (Sequence[torch.Tensor]): ``(B, N, K)`` per global
            view, from the unmasked image.
        masks (Sequence[torch.Tensor]): ``(B, N)`` or ``(B, h, w)`` per
            global view, True where the student's patch was masked.
        center (torch.Tensor): ``(1, K)`` centre of the teacher patch logits.
        student_temp (float): Student temperature.
        teacher_temp (float): Teacher patch temperature.
        loss_weight (float): Weight of the loss. Defaults to 1.0.

    Returns:
        torch.Tensor: The scalar, weighted loss.
    """
    if not len(student_patch) == len(teacher_patch) == len(masks):
        raise ValueError(
            'The iBOT patch loss needs student patches, teacher patches '
            f'and masks for every view, got {len(student_patch)}, '
            f'{len(teacher_patch)} and {len(masks)}.')
    total = 0.
    for s, t, m in zip(student_patch, teacher_patch, masks):
        m = m.flatten(1).float()  # B x N
        if m.shape != s.shape[:2] or t.shape != s.shape:
            raise ValueError(
                f'iBOT patch loss: student patches {tuple(s.shape)}, '
                f'teacher patches {tuple(t.shape)} and mask '
                f'{tuple(m.shape)} (flattened) do not match.')
        t = F.softmax((t.float() - center) / teacher_temp, dim=-1)
        ce = torch.sum(
            -t * F.log_softmax(s.float() / student_temp, dim=-1),
            dim=-1)  # B x N
        total = total + ((ce * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    # weight before the view average: the rounding iBOTHead has always had
    return loss_weight * total / len(teacher_patch)


@MODELS.register_module()
class iBOTPatchLoss(nn.Module):
    """iBOT's masked-patch self-distillation loss (:func:`ibot_patch_loss`).

    The centre and the temperatures are the head's (a buffer and a
    schedule), so they come with each call, as the weight does: it applies
    before the view average.
    """

    def forward(self,
                student_patch: Sequence[torch.Tensor],
                teacher_patch: Sequence[torch.Tensor],
                masks: Sequence[torch.Tensor],
                center: torch.Tensor,
                student_temp: float,
                teacher_temp: float,
                loss_weight: float = 1.0) -> torch.Tensor:
        """See :func:`ibot_patch_loss`."""
        return ibot_patch_loss(student_patch, teacher_patch, masks, center,
                               student_temp, teacher_temp, loss_weight)
