"""iBOTHead weighs the class-token and patch losses its config builds."""
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from hirl_mm.models import iBOTHead


@MODELS.register_module(force=True)
class SpyClsLoss(nn.Module):

    def forward(self, *args):
        return torch.tensor(2.)


@MODELS.register_module(force=True)
class SpyPatchLoss(nn.Module):
    """Keeps the temperatures and weight it is given and returns 5."""

    def forward(self, student, teacher, masks, center, student_temp,
                teacher_temp, loss_weight):
        self.seen = (center.clone(), student_temp, teacher_temp, loss_weight)
        return torch.tensor(5.)


def test_losses_are_built_from_config():
    head = iBOTHead(out_channels=4)
    assert type(head.loss_module).__name__ == 'DINOLoss'
    assert type(head.patch_loss_module).__name__ == 'iBOTPatchLoss'
    head = MODELS.build(
        dict(
            type='iBOTHead',
            out_channels=4,
            teacher_patch_temp=0.06,
            warmup_teacher_temp_epochs=0,
            cls_loss_weight=0.5,
            patch_loss_weight=0.3,
            loss=dict(type='SpyClsLoss'),
            patch_loss=dict(type='SpyPatchLoss')))
    torch.manual_seed(0)
    cls = [torch.randn(2, 4) for _ in range(2)]
    patch = [torch.randn(2, 3, 4) for _ in range(2)]
    masks = [torch.ones(2, 3, dtype=torch.bool)] * 2
    losses = head.loss(cls, cls, patch, patch, masks, epoch=0)
    assert losses['loss_cls'].item() == 0.5 * 2.
    assert losses['loss_patch'].item() == 5.
    center, student_temp, teacher_temp, weight = head.patch_loss_module.seen
    assert torch.equal(center, torch.zeros(1, 4))  # before the update
    assert (student_temp, teacher_temp, weight) == (0.1, 0.06, 0.3)
    assert head.patch_center.abs().sum() > 0
