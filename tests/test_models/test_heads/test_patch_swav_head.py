"""PatchSwAVHead builds its prototypes' loss from config: any
GlobalSwAVLoss, whose codes balance the prototypes over the global batch."""
import pytest
import torch
from mmpretrain.registry import MODELS

from hirl_mm.models import PatchSwAVHead
from hirl_mm.models.losses import GlobalSwAVLoss

NECK = dict(type='SwAVNeck', in_channels=8, hid_channels=8, out_channels=8)
LOSS = dict(feat_dim=8, num_prototypes=4, num_crops=[2])


@MODELS.register_module(force=True)
class HalvedSwAVLoss(GlobalSwAVLoss):

    def forward(self, x):
        return super().forward(x) / 2


def head(loss_type):
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='PatchSwAVHead', neck=NECK, loss=dict(LOSS, type=loss_type)))


def test_loss_is_built_from_config():
    feats = (torch.randn(2 * 6, 8, 1, 1), )  # 2 views x 6 patch rows
    loss, logits = head('GlobalSwAVLoss').loss(feats)
    halved, same = head('HalvedSwAVLoss').loss(feats)
    assert type(head('HalvedSwAVLoss').loss_module) is HalvedSwAVLoss
    torch.testing.assert_close(halved, loss / 2)
    assert torch.equal(logits, same) and logits.shape == (12, 4)
    with pytest.raises(TypeError, match='GlobalSwAVLoss'):
        head('SwAVLoss')
    with pytest.raises(ValueError, match='one prototype layer'):
        PatchSwAVHead(
            neck=NECK,
            loss=dict(LOSS, type='GlobalSwAVLoss', num_prototypes=[4, 2]))
