from typing import Dict, List, Sequence, Tuple

import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..utils.block_masks import random_block_masks
from .dino import DINO


@MODELS.register_module()
class iBOT(DINO):
    """iBOT: DINO on class tokens + masked patch self-distillation.

    Implementation of `iBOT: Image BERT Pre-Training with Online Tokenizer
    <https://arxiv.org/abs/2111.07832>`_ on top of :class:`DINO`. The
    backbone (:class:`MaskedViT`, ``out_type='raw'``) sees the global
    crops with block-masked patches (mask token), the teacher the unmasked
    crops; one projection head is shared by the class and patch tokens and
    :class:`iBOTHead` computes ``loss_cls`` (DINO's loss on the class
    tokens, local crops included) and ``loss_patch`` (masked positions).

    Args:
        mask_ratio (Sequence[float]): Range of the masked fraction of a
            masked image. Defaults to (0.1, 0.5).
        mask_prob (float): Probability that a global crop is masked.
            Defaults to 0.5.
        **kwargs: :class:`DINO`'s arguments.
    """

    def __init__(self,
                 *args,
                 mask_ratio: Sequence[float] = (0.1, 0.5),
                 mask_prob: float = 0.5,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mask_ratio = tuple(mask_ratio)
        self.mask_prob = mask_prob

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor]:
        """The class tokens, (B, C), one per backbone output."""
        return tuple(out[:, 0] for out in self.backbone(inputs))

    def loss(self, inputs: List[torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """iBOT's losses of a multi-crop batch.

        Args:
            inputs (List[Tensor]): Views, each (B, C, H, W): the global
                crops first, then the local crops.
            data_samples (List[DataSample]): Not used.

        Returns:
            dict: ``loss_cls`` and ``loss_patch``.
        """
        global_views, local_views = self._split_views(inputs)
        epoch = self.current_epoch()
        self._start_step(epoch)
        num_global = len(global_views)
        B, _, H, W = global_views[0].shape
        stride = self.backbone.patch_embed.projection.stride
        masks = random_block_masks(B * num_global,
                                   (H // stride[0], W // stride[1]),
                                   self.mask_ratio,
                                   self.mask_prob).to(global_views[0].device)

        tokens = self.backbone(torch.cat(global_views), mask=masks)[-1]
        student_cls, student_patch = [], []
        for t in tokens.chunk(num_global):  # the first global view first
            logits = self.neck((t, ))[1]  # B x (1 + N) x K
            student_cls.append(logits[:, 0])
            student_patch.append(logits[:, 1:])
        if local_views:
            cls = self.backbone(torch.cat(local_views))[-1][:, 0]
            student_cls += list(self.neck((cls, ))[1].chunk(len(local_views)))
        with torch.no_grad():
            teacher = self.teacher(torch.cat(global_views))[1]
        return self.head.loss(student_cls, teacher[:, 0].chunk(num_global),
                              student_patch, teacher[:, 1:].chunk(num_global),
                              masks.chunk(num_global), epoch)
