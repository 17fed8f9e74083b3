from typing import Dict, Optional, Sequence

import torch
from mmpretrain.registry import MODELS

from .dino_head import DINOHead


@MODELS.register_module()
class iBOTHead(DINOHead):
    """iBOT's losses: DINO's class-token loss + masked patch distillation.

    ``loss_cls`` is :class:`DINOHead`'s loss on the class tokens. For
    every global view, ``loss_patch`` is the cross-entropy between the
    teacher's centred, sharpened patch distributions (unmasked image) and
    the student's (masked image) at the masked positions only: per image the
    sum over masked patches divided by their number (an image without mask
    counts as 0), averaged over images and views (``patch_loss``,
    :class:`iBOTPatchLoss`).
    The patch logits have their own centre and teacher temperature schedule.

    Args:
        out_channels (int): Number of logits (class and patch tokens share
            the projection head).
        teacher_patch_temp (float): Teacher patch temperature after the
            warm-up. Defaults to 0.07.
        warmup_teacher_patch_temp (float): At epoch 0. Defaults to 0.04.
        cls_loss_weight (float): Weight of ``loss_cls``. Defaults to 1.0.
        patch_loss_weight (float): Weight of ``loss_patch``. Defaults to 1.0.
        patch_loss (dict): Config of the patch loss. Defaults to
            ``dict(type='iBOTPatchLoss')``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
        **kwargs: :class:`DINOHead`'s arguments (``student_temp``,
            ``teacher_temp``, ``warmup_teacher_temp``,
            ``warmup_teacher_temp_epochs`` (both warm-ups),
            ``center_momentum``, ``loss`` of the class tokens).
    """

    def __init__(self,
                 out_channels: int,
                 teacher_patch_temp: float = 0.07,
                 warmup_teacher_patch_temp: float = 0.04,
                 cls_loss_weight: float = 1.0,
                 patch_loss_weight: float = 1.0,
                 patch_loss: dict = dict(type='iBOTPatchLoss'),
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        super().__init__(out_channels, init_cfg=init_cfg, **kwargs)
        if min(teacher_patch_temp, warmup_teacher_patch_temp) <= 0:
            raise ValueError('iBOTHead temperatures must be positive.')
        self.teacher_patch_temp = teacher_patch_temp
        self.warmup_teacher_patch_temp = warmup_teacher_patch_temp
        self.cls_loss_weight = cls_loss_weight
        self.patch_loss_weight = patch_loss_weight
        self.register_buffer('patch_center', torch.zeros(1, out_channels))
        self.patch_loss_module = MODELS.build(patch_loss)

    def teacher_patch_temp_at(self, epoch: int) -> float:
        """The teacher patch temperature of an epoch."""
        return self.warmup_value(self.warmup_teacher_patch_temp,
                                 self.teacher_patch_temp,
                                 self.warmup_teacher_temp_epochs, epoch)

    def loss(self,
             student_cls: Sequence[torch.Tensor],
             teacher_cls: Sequence[torch.Tensor],
             student_patch: Sequence[torch.Tensor],
             teacher_patch: Sequence[torch.Tensor],
             masks: Sequence[torch.Tensor],
             epoch: int = 0) -> Dict[str, torch.Tensor]:
        """Both iBOT losses; updates both centres.

        Args:
            student_cls (Sequence[Tensor]): (B, K) per student view, the
                global views first.
            teacher_cls (Sequence[Tensor]): (B, K) per global view.
            student_patch (Sequence[Tensor]): (B, N, K) per global view,
                from the masked image.
            teacher_patch (Sequence[Tensor]): (B, N, K) per global view.
            masks (Sequence[Tensor]): (B, N) or (B, h, w) per global view,
                True where the student's patch was masked.
            epoch (int): Current epoch. Defaults to 0.

        Returns:
            dict: ``loss_cls`` and ``loss_patch``.
        """
        if not len(student_patch) == len(teacher_patch) == len(masks) == len(
                teacher_cls):
            raise ValueError(
                'iBOTHead needs student patches, teacher patches and '
                'masks for every global view, got '
                f'{len(student_patch)}, {len(teacher_patch)}, {len(masks)} '
                f'for {len(teacher_cls)} global views.')
        loss_cls = super().loss(student_cls, teacher_cls, epoch)
        loss_patch = self.patch_loss_module(student_patch, teacher_patch,
                                            masks, self.patch_center,
                                            self.student_temp,
                                            self.teacher_patch_temp_at(epoch),
                                            self.patch_loss_weight)
        self.update_patch_center(torch.cat(list(teacher_patch)))
        return dict(
            loss_cls=self.cls_loss_weight * loss_cls, loss_patch=loss_patch)

    @torch.no_grad()
    def update_patch_center(self, teacher_patch: torch.Tensor) -> None:
        """EMA of the mean teacher patch logits, (B, N, K), over all ranks."""
        self.patch_center.copy_(
            self._ema(self.patch_center, teacher_patch, self.center_momentum))
