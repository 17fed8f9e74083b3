from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.models import BaseSelfSupervisor, CosineEMA
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


@MODELS.register_module()
class DINO(BaseSelfSupervisor):
    """DINO: self-distillation with no labels, multi-crop.

    Implementation of `Emerging Properties in Self-Supervised Vision
    Transformers <https://arxiv.org/abs/2104.14294>`_ on MMPretrain parts:
    the student is ``backbone`` + ``neck`` (:class:`DINONeck`), the
    teacher ``teacher`` is their :class:`CosineEMA` (teacher momentum
    1 - ``base_momentum`` rising to 1 - ``end_momentum`` on a cosine over
    all iterations, i.e. 0.996 -> 1 by default), updated at the start of
    every step as MMPretrain's MoCo v3 does, and always in eval mode (no
    drop path). The teacher sees the
    ``num_global_views`` global crops (the first views), the student every
    view; ``head`` (:class:`DINOHead`) computes the centred, sharpened
    cross-view loss.

    The student's neck runs on the first global view first, so its first
    output in a step is the first view's bottleneck (what :class:`HIRL`
    captures with ``proj_module='neck'``), and ``teacher`` maps images to
    (bottleneck, logits) (HIRL's default ``proto_branch``).

    Args:
        backbone (dict): Backbone config (e.g. ``VisionTransformer`` with
            ``out_type='cls_token'``).
        neck (dict): Projection head config (:class:`DINONeck`).
        head (dict): Loss head config (:class:`DINOHead`).
        base_momentum (float): 1 - teacher momentum at the start.
            Defaults to 0.004.
        end_momentum (float): 1 - teacher momentum at the end. Defaults to 0.
        num_global_views (int): Number of global crops (the first views).
            Defaults to 2.
        freeze_last_layer_epochs (int): Epochs during which the last layer
            of the student's neck gets no gradient (DINO's
            ``--freeze_last_layer``). Defaults to 1 (epoch 0, DINO's
            default).
        pretrained (str, optional): Checkpoint. Defaults to None.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 base_momentum: float = 0.004,
                 end_momentum: float = 0.,
                 num_global_views: int = 2,
                 freeze_last_layer_epochs: int = 1,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if num_global_views < 1:
            raise ValueError(
                f'num_global_views must be >= 1, got {num_global_views}.')
        self.num_global_views = num_global_views
        self.freeze_last_layer_epochs = freeze_last_layer_epochs
        self.teacher = CosineEMA(
            nn.Sequential(self.backbone, self.neck),
            momentum=base_momentum,
            end_momentum=end_momentum)

    def train(self, mode: bool = True) -> 'DINO':
        super().train(mode)
        self.teacher.eval()  # e.g. no drop path in the teacher
        return self

    @staticmethod
    def current_epoch() -> int:
        """The runner's epoch (0 outside a runner)."""
        return MessageHub.get_current_instance().get_info('epoch', 0) or 0

    def _split_views(
        self, inputs: List[torch.Tensor]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        if not isinstance(inputs, (list, tuple)) or \
                len(inputs) < max(2, self.num_global_views):
            n = len(inputs) if isinstance(inputs, (list, tuple)) else 1
            raise ValueError(
                f'{type(self).__name__} needs a list of at least '
                f'{max(2, self.num_global_views)} views '
                f'({self.num_global_views} global crops first, then local '
                f'crops; MultiView in the pipeline), got {n}.')
        return (list(inputs[:self.num_global_views]),
                list(inputs[self.num_global_views:]))

    def _start_step(self, epoch: int) -> None:
        self.teacher.update_parameters(nn.Sequential(self.backbone, self.neck))
        self.neck.freeze_last_layer = epoch < self.freeze_last_layer_epochs

    def loss(self, inputs: List[torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """Self-distillation loss of a multi-crop batch.

        Args:
            inputs (List[Tensor]): Views, each (B, C, H, W): the global
                crops first, then the local crops.
            data_samples (List[DataSample]): Not used.

        Returns:
            dict: ``loss_dino``.
        """
        global_views, local_views = self._split_views(inputs)
        epoch = self.current_epoch()
        self._start_step(epoch)

        # one backbone pass per resolution, one neck call per view (the
        # first global view first)
        feats = self.backbone(torch.cat(global_views))[-1]
        student = [self.neck((f, ))[1] for f in feats.chunk(len(global_views))]
        if local_views:
            feats = self.backbone(torch.cat(local_views))[-1]
            student += list(self.neck((feats, ))[1].chunk(len(local_views)))
        with torch.no_grad():
            teacher = self.teacher(torch.cat(global_views))[1]
        loss = self.head.loss(student, teacher.chunk(len(global_views)), epoch)
        return dict(loss_dino=loss)
