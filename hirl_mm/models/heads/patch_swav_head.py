from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..losses import GlobalSwAVLoss


@MODELS.register_module()
class PatchSwAVHead(BaseModule):
    """One SS-PRL pyramid scale: its projection, prototypes and SwAV loss.

    The patch features of a scale (all views and cells of the batch in one
    tensor, view by view) go through the scale's own projection ``neck``
    (e.g. ``SwAVNeck``); ``loss`` (:class:`GlobalSwAVLoss` with
    ``num_crops=[num_views]``) holds the scale's prototypes and does the
    swapped prediction between the views of the same patch.

    Args:
        neck (dict): Projection config; takes a list with one backbone
            output.
        loss (dict): ``GlobalSwAVLoss`` config with a single prototype
            layer.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 neck: dict,
                 loss: dict,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.neck = MODELS.build(neck)
        self.loss_module = MODELS.build(loss)
        if not isinstance(self.loss_module, GlobalSwAVLoss):
            raise TypeError(
                "PatchSwAVHead needs loss=dict(type='GlobalSwAVLoss', ...), "
                f'got {type(self.loss_module).__name__}: its codes balance '
                'the prototypes over the global batch.')
        if not isinstance(self.loss_module.prototypes, nn.Linear):
            raise ValueError('PatchSwAVHead needs one prototype layer: '
                             'set loss.num_prototypes to an int.')

    @property
    def num_prototypes(self) -> int:
        return self.loss_module.prototypes.out_features

    def loss(
            self, feats: Sequence[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Patch-level SwAV loss and the patch logits.

        Args:
            feats (Sequence[torch.Tensor]): Backbone outputs of the scale's
                ``V * g * g * B`` patch views, view by view.

        Returns:
            Tuple[torch.Tensor, torch.Tensor]: The loss and the prototype
            scores of every patch view, ``(V * g * g * B) x K``.
        """
        z = self.neck([feats])  # (V * g * g * B) x D, L2-normalised
        queue = self.loss_module.queue
        rows = z.shape[0] // sum(self.loss_module.num_crops)
        if queue is not None and queue.shape[1] < rows:
            raise ValueError(
                f'The patch queue holds {queue.shape[1]} rows per view (per '
                f'process), fewer than the {rows} patch rows of a view in '
                'one batch: raise SSPRLHook.patch_queue_lengths.')
        loss = self.loss_module(z)  # also L2-normalises the prototypes
        return loss, self.loss_module.prototypes(z)
