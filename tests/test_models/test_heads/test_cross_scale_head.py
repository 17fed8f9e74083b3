"""CrossScaleHead scores the patch views and hands them to its loss."""
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from hirl_mm.models import CrossScaleHead


@MODELS.register_module(force=True)
class SpyCrossScaleLoss(nn.Module):

    def forward(self, scores, codes, temperature):
        self.seen = (scores, temperature)
        return scores.sum() * 0


def test_loss_is_built_from_config():
    head = CrossScaleHead(num_local=4, num_global=6)
    assert type(head.loss_module).__name__ == 'CrossScaleLoss'
    head = MODELS.build(
        dict(
            type='CrossScaleHead',
            num_local=4,
            num_global=6,
            temperature=0.2,
            loss=dict(type='SpyCrossScaleLoss')))
    torch.manual_seed(0)
    logits = torch.randn(2 * 3 * 5, 4)  # 2 views x 3 cells x 5 images
    codes = [torch.softmax(torch.randn(5, 6), 1)]
    assert head.loss(logits, codes, num_views=2).item() == 0
    scores, temperature = head.loss_module.seen
    assert scores.shape == (2, 5, 6) and temperature == 0.2
    torch.testing.assert_close(scores, head(logits, 5, 2))
