from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS


@MODELS.register_module()
class MaskedViT(VisionTransformer):
    """MMPretrain's VisionTransformer with a learned mask token (iBOT).

    ``forward(x, mask)`` replaces the embeddings of the masked patches by
    the mask token before the class token and the position embeddings are
    added; ``forward(x)`` is the plain VisionTransformer. The checkpoint
    keys are VisionTransformer's plus ``mask_token``, so downstream
    VisionTransformer configs load it.

    Args:
        out_type (str): As VisionTransformer's. Defaults to 'raw' (class
            token first, then the patch tokens).
        *args, **kwargs: VisionTransformer's arguments.
    """

    def __init__(self, *args, out_type: str = 'raw', **kwargs) -> None:
        super().__init__(*args, out_type=out_type, **kwargs)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))

    def init_weights(self) -> None:
        super().init_weights()
        if not (isinstance(self.init_cfg, dict)
                and self.init_cfg['type'] == 'Pretrained'):
            trunc_normal_(self.mask_token, std=0.02)

    def forward(self,
                x: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor]:
        """Encode images, optionally with masked patches.

        Args:
            x (Tensor): Images, (B, C, H, W).
            mask (Tensor, optional): (B, h, w) or (B, h * w), True / 1 where
                the patch is replaced by the mask token. Defaults to None.

        Returns:
            tuple[Tensor]: One output per ``out_indices``, as
            VisionTransformer's.
        """
        if mask is None:
            return super().forward(x)
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)  # B x L x C
        if mask.shape[0] != B or mask[0].numel() != x.shape[1]:
            raise ValueError(
                f'MaskedViT: mask of shape {tuple(mask.shape)} does not '
                f'match {B} images of {patch_resolution} patches.')
        w = mask.reshape(B, -1, 1).type_as(x)
        x = x * (1. - w) + self.mask_token.expand(B, x.shape[1], -1) * w

        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = self.pre_norm(self.drop_after_pos(x))

        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, patch_resolution))
        return tuple(outs)
