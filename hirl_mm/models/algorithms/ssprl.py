from typing import Dict, List, Sequence, Union

import torch
import torch.nn as nn
from mmpretrain.models import SwAV
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..losses import GlobalSwAVLoss


def _per_scale(value: Union[float, Sequence[float]], num: int,
               name: str) -> List[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * num
    if len(value) != num:
        raise ValueError(f'{name} needs one weight per pyramid scale ({num}),'
                         f' got {list(value)}.')
    return [float(v) for v in value]


@MODELS.register_module()
class SSPRL(SwAV):
    """SS-PRL: SwAV with a pyramid of patch-level prototypes.

    Implementation of `Self-Supervised Pyramid Representation Learning for
    Multi-Label Visual Analysis and Beyond (WACV 2023)
    <https://arxiv.org/abs/2208.14439>`_ on MMPretrain's SwAV. The inputs
    are the global multi-crop views followed by the patch views of each
    scale (see :class:`hirl_mm.datasets.PyramidPatches`). Global views
    train SwAV as usual (``head``, the queue of ``SwAVHook``); every scale's
    patch views go through the backbone as one batch, then through the
    scale's :class:`PatchSwAVHead` (swapped prediction between the two
    views of each patch, with the scale's patch queue once
    :class:`SSPRLHook` starts it) and :class:`CrossScaleHead` (per patch
    view, the mean of its cells' scores -> global prototypes, predicting
    the global views' Sinkhorn codes). Every prototype matrix (global,
    patch, cross-scale) has unit rows at each forward and is frozen by the
    hook's ``frozen_layers_cfg=dict(prototypes=N)``, as in the reference
    (WesleyHsieh0806/SS-PRL, ``src/resnet50.py`` ``ptypes_normalize`` /
    ``clean_grad``).

    Loss terms: ``loss_global``, and per scale ``g``:
    ``loss_local_g{g}`` (weighted by ``local_loss_weight``) and
    ``loss_l2g_g{g}`` (weighted by ``l2g_loss_weight``).

    Args:
        backbone (dict): Backbone config.
        neck (dict): Global projection (``SwAVNeck``) config.
        head (dict): Global ``SwAVHead`` config.
        patch_heads (List[dict]): One :class:`PatchSwAVHead` per scale.
        cross_scale_heads (List[dict]): One :class:`CrossScaleHead` per
            scale.
        grids (Sequence[int]): Grid side of each scale, as in the pipeline.
            Defaults to (2, 3).
        num_patch_views (int): Views per patch. Defaults to 2.
        local_loss_weight (float | Sequence[float]): Weight of each scale's
            patch SwAV loss. Defaults to 0.25.
        l2g_loss_weight (float | Sequence[float]): Weight of each scale's
            cross-scale loss. Defaults to 0.25.
        **kwargs: Passed to :class:`mmpretrain.models.SwAV`.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 patch_heads: List[dict],
                 cross_scale_heads: List[dict],
                 grids: Sequence[int] = (2, 3),
                 num_patch_views: int = 2,
                 local_loss_weight: Union[float, Sequence[float]] = 0.25,
                 l2g_loss_weight: Union[float, Sequence[float]] = 0.25,
                 **kwargs) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)
        self.grids = tuple(grids)
        if not len(patch_heads) == len(cross_scale_heads) == len(grids):
            raise ValueError(
                'patch_heads, cross_scale_heads and grids need one entry per '
                f'scale, got {len(patch_heads)}, {len(cross_scale_heads)} '
                f'and {len(grids)}.')
        if len(set(self.grids)) != len(self.grids):
            raise ValueError(f'grids must be distinct, got {list(grids)}.')
        self.num_patch_views = num_patch_views
        self.patch_heads = nn.ModuleList(
            MODELS.build(cfg) for cfg in patch_heads)
        self.cross_scale_heads = nn.ModuleList(
            MODELS.build(cfg) for cfg in cross_scale_heads)
        if not isinstance(self.head.loss_module, GlobalSwAVLoss):
            raise TypeError(
                "SSPRL's global head needs loss=dict(type='GlobalSwAVLoss', "
                f'...), got {type(self.head.loss_module).__name__}: its '
                'codes balance the prototypes over the global batch.')
        num_global = self.head.loss_module.prototypes.out_features
        for g, ph, ch in zip(self.grids, self.patch_heads,
                             self.cross_scale_heads):
            if ch.prototypes.in_features != ph.num_prototypes or \
                    ch.prototypes.out_features != num_global:
                raise ValueError(
                    f'Scale g={g}: the cross-scale head maps '
                    f'{ch.prototypes.in_features} -> '
                    f'{ch.prototypes.out_features} '
                    f'prototypes, the patch head has {ph.num_prototypes} and'
                    f' the global head {num_global}.')
        self.local_loss_weight = _per_scale(local_loss_weight, len(grids),
                                            'local_loss_weight')
        self.l2g_loss_weight = _per_scale(l2g_loss_weight, len(grids),
                                          'l2g_loss_weight')

    @torch.no_grad()
    def global_codes(self, z: torch.Tensor) -> List[torch.Tensor]:
        """Sinkhorn codes of the global views, as the global loss computes
        them (:meth:`GlobalSwAVLoss.codes`).

        Called before the global loss, so the queue is in the state the
        loss uses.

        Args:
            z (torch.Tensor): Global projections, view by view.

        Returns:
            List[torch.Tensor]: ``B x K`` codes of each assigned view.
        """
        return self.head.loss_module.codes(z)[0]

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Global SwAV + per-scale patch SwAV + cross-scale losses.

        Args:
            inputs (List[torch.Tensor]): The global views, then per scale
                ``num_patch_views * g * g`` patch views.
            data_samples (List[DataSample]): Unused.

        Returns:
            Dict[str, torch.Tensor]: Named, weighted loss terms.
        """
        num_global = sum(self.head.loss_module.num_crops)
        sizes = [self.num_patch_views * g * g for g in self.grids]
        if not isinstance(inputs, list) or \
                len(inputs) != num_global + sum(sizes):
            raise ValueError(
                f'SSPRL expects {num_global} global views + {sizes} '
                f'patch views = {num_global + sum(sizes)} inputs, got '
                f'{len(inputs) if isinstance(inputs, list) else inputs}: '
                'check the PyramidPatches transform against the model '
                '(grids, num_patch_views, num_crops).')
        # global views: MMPretrain's SwAV (one backbone pass per resolution)
        global_inputs = inputs[:num_global]
        idx_crops = torch.cumsum(
            torch.unique_consecutive(
                torch.tensor([x.shape[-1] for x in global_inputs]),
                return_counts=True)[1], 0)
        start, output = 0, []
        for end in idx_crops:
            output.append(self.backbone(torch.cat(global_inputs[start:end])))
            start = end
        z = self.neck(output)  # (num_global * B) x D
        codes = self.global_codes(z)
        losses = dict(loss_global=self.head.loss(z))

        start = num_global
        for i, (g, size) in enumerate(zip(self.grids, sizes)):
            # the whole scale in one backbone batch: (V * g * g * B) images
            feats = self.backbone(torch.cat(inputs[start:start + size]))
            start += size
            local, logits = self.patch_heads[i].loss(feats)
            l2g = self.cross_scale_heads[i].loss(logits, codes,
                                                 self.num_patch_views)
            losses[f'loss_local_g{g}'] = self.local_loss_weight[i] * local
            losses[f'loss_l2g_g{g}'] = self.l2g_loss_weight[i] * l2g
        return losses
