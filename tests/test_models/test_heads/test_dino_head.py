"""DINOHead hands its loss the centre before the update and the epoch's
temperatures; a config swaps the loss."""
import numpy as np
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from hirl_mm.models import DINOHead


@MODELS.register_module(force=True)
class SpyDistillLoss(nn.Module):
    """Keeps the centre and temperatures it is given and returns 7."""

    def forward(self, student, teacher, center, student_temp, teacher_temp):
        self.seen = (center.clone(), student_temp, teacher_temp)
        return torch.tensor(7.)


def test_loss_is_built_from_config():
    assert type(DINOHead(out_channels=3).loss_module).__name__ == 'DINOLoss'
    head = MODELS.build(
        dict(
            type='DINOHead',
            out_channels=3,
            student_temp=0.2,
            warmup_teacher_temp_epochs=3,
            loss=dict(type='SpyDistillLoss')))
    torch.manual_seed(0)
    student = [torch.randn(2, 3) for _ in range(3)]
    teacher = student[:2]
    assert head.loss(student, teacher, epoch=1).item() == 7.
    center, student_temp, teacher_temp = head.loss_module.seen
    assert torch.equal(center, torch.zeros(1, 3))  # before the update
    assert student_temp == 0.2
    assert teacher_temp == np.linspace(0.04, 0.07, 3)[1]
    # the head still moves its centre
    expected = 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    torch.testing.assert_close(head.center, expected)
