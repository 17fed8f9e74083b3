import math

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from hirl_mm.models import HIRLNeck, SPDHead


def tiny_tree():
    level0 = torch.tensor([[1., 0.], [0., 1.], [-1., 0.], [0., -1.]])
    level1 = torch.tensor([[1., 1.], [-1., -1.]]) / math.sqrt(2)
    return [level0, level1]


def test_spd_loss_hand_computation():
    head = SPDHead(num_neg_path=4)
    z = [torch.tensor([[1., 0.]]), torch.tensor([[1., 0.]])]
    pos = torch.tensor([[0, 0]])
    # Negative leaves 0..3 with parents [0, 0, 1, 1]; (0, 0) is the
    # positive path itself and must be masked.
    neg = torch.tensor([[[0, 0], [1, 0], [2, 1], [3, 1]]])
    loss = head.loss(z, pos, tiny_tree(), neg)

    r = (1 + 1 / math.sqrt(2)) / 2  # (1 + cos 45 deg) / 2
    l_pos = -math.log(1 * r + 1e-6)
    # path (1, 0): cos 0 and 45 deg; (2, 1): cos 180 deg; (3, 1): cos 0 and
    # 135 deg.
    s_neg = [0.5 * r, 0.0, 0.5 * (1 - 1 / math.sqrt(2)) / 2]
    l_neg = sum(-math.log(1 - s + 1e-6) for s in s_neg) / 3
    assert abs(loss.item() - (l_pos + l_neg) / 2) < 1e-6


def test_all_negatives_masked_gives_positive_term_only():
    head = SPDHead(num_neg_path=2)
    z = [torch.tensor([[0., 1.]]), torch.tensor([[1., 0.]])]
    pos = torch.tensor([[1, 0]])
    neg = torch.tensor([[[1, 0], [1, 0]]])
    loss = head.loss(z, pos, tiny_tree(), neg)
    s_pos = 1 * (1 + 1 / math.sqrt(2)) / 2
    assert abs(loss.item() - (-math.log(s_pos + 1e-6)) / 2) < 1e-6


def test_gradient_reaches_the_neck():
    torch.manual_seed(0)
    neck = HIRLNeck(in_channels=8, num_levels=2, num_layers=2, out_channels=2)
    head = SPDHead(num_neg_path=5)
    proj = torch.randn(6, 8)
    pos = torch.tensor([[0, 0], [1, 0], [2, 1], [3, 1], [0, 0], [2, 1]])
    parents = torch.tensor([0, 0, 1, 1])
    leaves = head.sample_negatives(6, 4, proj.device)
    neg = torch.stack([leaves, parents[leaves]], dim=-1)
    assert neg.shape == (6, 5, 2)
    out = neck(proj)
    assert [o.shape for o in out] == [(6, 2), (6, 2)]
    torch.testing.assert_close(out[0].norm(dim=1), torch.ones(6))
    head.loss(out, pos, tiny_tree(), neg).backward()
    for mlp in neck.mlps:
        assert mlp[0].weight.grad.abs().sum() > 0
        assert mlp[-1].weight.grad.abs().sum() > 0


@MODELS.register_module(force=True)
class SpyPathLoss(nn.Module):
    """Keeps what the head hands its loss and returns ``value``."""

    def __init__(self, value=3.):
        super().__init__()
        self.value, self.args = value, None

    def forward(self, *args):
        self.args = args
        return torch.tensor(self.value)


def test_loss_is_built_from_config():
    assert type(SPDHead().loss_module).__name__ == 'SPDLoss'
    head = MODELS.build(
        dict(type='SPDHead', loss=dict(type='SpyPathLoss', value=2.)))
    z, pos = [torch.tensor([[1., 0.]])] * 2, torch.tensor([[0, 0]])
    neg = torch.tensor([[[1, 0]]])
    assert head.loss(z, pos, tiny_tree(), neg).item() == 2.
    assert head.loss_module.args[1] is pos and head.loss_module.args[3] is neg


def test_eps_of_older_configs_reaches_the_loss():
    assert SPDHead().loss_module.eps == 1e-6
    assert SPDHead(eps=1e-4).loss_module.eps == 1e-4
    head = SPDHead(loss=dict(type='SPDLoss', eps=1e-3))
    assert head.loss_module.eps == 1e-3
