"""DINO's gradient clipping and last-layer freeze, against the reference
rules (facebookresearch/dino, ``utils.py`` lines 132-149; ``main_dino.py``
lines 326-335)."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from test_dino_ibot import EMBEDDED, REFERENCE, batch, build

from hirl_mm.engine import clip_grad_norm_per_parameter_


def reference_clip(grads, clip):
    """DINO's ``utils.clip_gradients`` on a list of gradients."""
    out = []
    for g in grads:
        g = g.clone()
        norm = g.norm(2)
        coef = clip / (norm + 1e-6)
        if coef < 1:
            g.mul_(coef)
        out.append(g)
    return out


def crafted():
    """One parameter with a large gradient (norm 5), one with a small one
    (norm 0.1), one without."""
    a, b, c = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad = torch.tensor([3., 4.])
    b.grad = torch.tensor([0.06, 0.08])
    return [a, b, c]


def test_per_parameter_clip_matches_the_reference_rule():
    params = crafted()
    expected = reference_clip([p.grad for p in params[:2]], 0.3)
    total = clip_grad_norm_per_parameter_(params, 0.3)
    for p, g in zip(params, expected):
        torch.testing.assert_close(p.grad, g)
    assert params[2].grad is None
    # the small gradient is untouched, the large one has norm 0.3
    torch.testing.assert_close(params[1].grad, torch.tensor([0.06, 0.08]))
    assert params[0].grad.norm().item() == pytest.approx(0.3, abs=1e-6)
    assert total.item() == pytest.approx((25 + 0.01)**0.5)
    # the global rule shrinks the small gradient as well: not the same
    glob = crafted()
    torch.nn.utils.clip_grad_norm_(glob, 0.3)
    assert glob[1].grad.norm().item() == pytest.approx(
        0.1 * 0.3 / 25.01**.5, rel=1e-4)
    assert not torch.allclose(glob[1].grad, params[1].grad)


@pytest.mark.parametrize('name', ['dino', 'ibot'])
def test_configs_clip_each_parameter(name):
    for path in (EMBEDDED[name], REFERENCE[name]):
        cfg = Config.fromfile(path)
        assert cfg.optim_wrapper.type == 'PerParameterClipOptimWrapper'
    assert Config.fromfile(
        REFERENCE[name]).optim_wrapper.clip_grad.max_norm == 0.3
    assert Config.fromfile(
        EMBEDDED[name]).optim_wrapper.clip_grad.max_norm == 3.0


def test_optim_wrapper_clips_each_parameter_before_the_step():
    init_default_scope('mmpretrain')
    model = nn.Linear(2, 1)
    wrapper = build_optim_wrapper(
        model,
        dict(
            type='PerParameterClipOptimWrapper',
            optimizer=dict(type='SGD', lr=1.),
            clip_grad=dict(max_norm=0.3)))
    # d/dw = 10 * x = (30, 40) (norm 50), d/db = 10
    loss = 10 * model(torch.tensor([[3., 4.]])).sum()
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    wrapper.update_params(loss)
    # SGD lr 1: the update is minus the clipped gradient
    w_grad = torch.tensor([[30., 40.]]) * 0.3 / (50 + 1e-6)
    torch.testing.assert_close(w0 - model.weight.detach(), w_grad)
    # the bias gradient (10) is clipped on its own, to 0.3
    torch.testing.assert_close(b0 - model.bias.detach(),
                               torch.tensor([10 * 0.3 / (10 + 1e-6)]))
    logged = MessageHub.get_current_instance().get_scalar(
        'train/grad_norm').current()
    assert logged == pytest.approx((50**2 + 10**2)**0.5)
    for bad in (dict(max_norm=0.), dict(type='value', clip_value=1.),
                dict(max_norm=1., norm_type=1)):
        with pytest.raises(ValueError, match='max_norm'):
            build_optim_wrapper(
                model,
                dict(
                    type='PerParameterClipOptimWrapper',
                    optimizer=dict(type='SGD', lr=1.),
                    clip_grad=bad))


def test_last_layer_gets_no_gradient_in_epoch_0_by_default():
    torch.manual_seed(0)
    hub = MessageHub.get_current_instance()
    hub.update_info('max_iters', 10)
    model = build('dino')
    assert model.freeze_last_layer_epochs == 1  # DINO's default
    model.train()
    grads = []
    for epoch in (0, 1):
        hub.update_info('epoch', epoch)
        model.zero_grad()
        losses = model.loss(**model.data_preprocessor(batch(), True))
        losses['loss_dino'].backward()
        grads.append(model.neck.last_layer.weight.grad)
        assert model.neck.mlp[0].weight.grad.abs().sum() > 0
    hub.update_info('epoch', 0)
    assert grads[0] is None
    assert grads[1] is not None and grads[1].abs().sum() > 0
