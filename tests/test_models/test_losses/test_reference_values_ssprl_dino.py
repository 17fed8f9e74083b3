"""SS-PRL's local and cross-scale terms and DINO's loss and centre, pinned
to values of the reference implementations' semantics.

The expected numbers were computed once by an independent numpy
re-implementation that follows the reference code operation by operation
(not hirl_mm's code), on the inputs that ``grid`` builds here:

- SS-PRL (WesleyHsieh0806/SS-PRL): ``SS-PRL/main_SSPRL.py`` lines 409-453
  (local term, with and without a full local queue), 456-470 (cross-scale
  term), 529-553 (``distributed_sinkhorn``, one process), 376-407 (global
  codes); ``SS-PRL/src/resnet50.py`` lines 296-314 (prototype rows
  renormalised at the start of the iteration) and 405-410
  (``forward_l2g``); ``SS-PRL/src/utils.py`` lines 205-222
  (``concat_local_logits``). T 0.1, epsilon 0.05, 3 Sinkhorn iterations.
- DINO (facebookresearch/dino): ``main_dino.py`` lines 363-416
  (``DINOLoss``: teacher temperature ``np.linspace(0.04, 0.07, 3)`` then
  0.07, epoch 1 -> 0.055; student temperature 0.1; centre momentum 0.9,
  one process).
"""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from hirl_mm.models import CrossScaleHead, DINOHead, PatchSwAVHead
from hirl_mm.models.algorithms.ssprl import SSPRL
from hirl_mm.models.losses import dino_loss

T = 0.1
BS, NPATCH, D, KL, KG = 2, 4, 4, 3, 5  # 2 images, a 2 x 2 grid
LBS = BS * NPATCH  # patch rows of one view


def grid(n, m, a, b, c, f=torch.sin):
    i = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(m, dtype=torch.float64)[None, :]
    return f(a * i + b * j + c)


def unit(x):
    return F.normalize(x, dim=-1)


class Given(nn.Module):
    """A projection that returns the given embeddings."""

    def forward(self, x):
        return x[0]


def patch_head():
    head = PatchSwAVHead(
        neck=dict(
            type='SwAVNeck',
            in_channels=D,
            hid_channels=D,
            out_channels=D,
            norm_cfg=dict(type='BN1d')),
        loss=dict(
            type='GlobalSwAVLoss',
            feat_dim=D,
            epsilon=0.05,
            temperature=T,
            num_crops=[2],
            num_prototypes=KL)).double()
    head.neck = Given()
    with torch.no_grad():
        head.loss_module.prototypes.weight.copy_(
            unit(grid(KL, D, 0.9, -0.4, 0.5, torch.cos)))
    return head


Z = unit(grid(2 * LBS, D, 0.7, 1.3, 0.1))  # 2 views x (4 cells x 2 images)


def test_ssprl_local_term():
    loss, _ = patch_head().loss(Z)
    assert loss.item() == _approx(1.4789514608582037)


def test_ssprl_local_term_with_a_full_patch_queue():
    head = patch_head()
    head.loss_module.queue = unit(grid(2 * LBS, D, -0.5, 0.8,
                                       0.2)).reshape(2, LBS, D)
    loss, _ = head.loss(Z)
    assert loss.item() == _approx(0.99393819612886)


def test_ssprl_global_codes_and_cross_scale_term():
    lm = MODELS.build(
        dict(
            type='GlobalSwAVLoss',
            feat_dim=D,
            epsilon=0.05,
            temperature=T,
            num_crops=[2],
            num_prototypes=KG)).double()
    with torch.no_grad():
        lm.prototypes.weight.copy_(
            unit(grid(KG, D, -0.6, 0.5, 0.3, torch.cos)))
    model = SimpleNamespace(head=SimpleNamespace(loss_module=lm))
    codes = SSPRL.global_codes(model, unit(grid(2 * BS, D, 0.3, 0.9, -0.2)))
    torch.testing.assert_close(
        codes[0],
        torch.tensor([[
            0.0022161015, 0.0218286343, 0.1482649359, 0.3901679942,
            0.4375223341
        ],
                      [
                          0.3657274616, 0.3492936907, 0.2433499436,
                          0.0406540714, 0.0009748326
                      ]],
                     dtype=torch.float64),
        rtol=0,
        atol=1e-9)
    _, patch_logits = patch_head().loss(Z)
    head = CrossScaleHead(num_local=KL, num_global=KG, temperature=T).double()
    with torch.no_grad():  # rows not unit: the head renormalises them
        head.prototypes.weight.copy_(2 *
                                     grid(KG, KL, 0.8, 0.6, -0.1, torch.cos))
    loss = head.loss(patch_logits, codes, num_views=2)
    assert loss.item() == _approx(8.034028018620294)


def test_dino_loss_and_centre_update():
    student = 2. * grid(4 * 3, 5, 0.37, 1.1, 0.2)  # 2 global + 2 local
    teacher = 1.5 * grid(2 * 3, 5, -0.45, 0.7, 0.9, torch.cos)
    centre = 0.3 * grid(1, 5, 0., 0.5, 0.4)
    head = DINOHead(
        out_channels=5,
        student_temp=0.1,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_epochs=3,
        center_momentum=0.9)
    head.center.copy_(centre)
    assert head.teacher_temp_at(1) == _approx(0.055)
    loss = head.loss(student.chunk(4), teacher.chunk(2), epoch=1)
    assert loss.item() == _approx(17.273355399522785, rel=1e-5)
    assert dino_loss(
        student.chunk(4), teacher.chunk(2), centre.float(), 0.1,
        0.055).item() == _approx(
            17.273355399522785, rel=1e-5)
    torch.testing.assert_close(
        head.center,
        torch.tensor([[
            0.2117209731, 0.3087280882, 0.3082243468, 0.2227518636,
            0.0901262607
        ]]),
        rtol=1e-5,
        atol=1e-6)


def _approx(value, rel=1e-9):
    return pytest.approx(value, rel=rel)
