"""The momentum encoder keeps BN statistics of its own key crops.

Reference semantics (facebookresearch/moco ``moco/builder.py``
``_momentum_update_key_encoder``; gyfastas/HCSC and hirl-team/HIRL do the
same): only the parameters are averaged; ``encoder_k`` runs in training
mode on the key crops, so its running statistics are those of the keys.
mmengine's averaged models with ``update_buffers=False`` instead copy the
online network's buffers at every update.
"""
import copy
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage
from mmpretrain.models.utils import CosineEMA

from hirl_mm.models.utils import keep_own_buffers


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


@pytest.mark.parametrize('ema_type', [ExponentialMovingAverage, CosineEMA])
def test_parameters_averaged_as_before_buffers_its_own(ema_type):
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('max_iters', 10)
    online = _net()
    plain = ema_type(online, momentum=0.1)
    ours = ema_type(online, momentum=0.1)
    keep_own_buffers(nn.ModuleList([ours]))
    keys = torch.randn(16, 3) * 3 + 5  # key crops unlike the queries
    expected_mean = torch.zeros(4)
    for _ in range(3):
        online(torch.randn(16, 3))  # the queries update the online BN
        with torch.no_grad():
            online[0].weight.add_(0.1)
        plain.update_parameters(online)
        ours.update_parameters(online)
        with torch.no_grad():
            ours(keys)
            plain(keys)
            h = ours.module[0](keys)
        expected_mean = 0.9 * expected_mean + 0.1 * h.mean(0)
    for (name, a), (_, b) in zip(ours.module.named_parameters(),
                                 plain.module.named_parameters()):
        torch.testing.assert_close(a, b, msg=name)
    bn = ours.module[1]
    torch.testing.assert_close(bn.running_mean, expected_mean)
    # mmengine's copy: the online network's statistics, then one key batch
    assert not torch.allclose(plain.module[1].running_mean, expected_mean)


def test_hirl_and_hcsc_momentum_encoders_keep_their_statistics():
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    for path in ('configs/hirl/hirl-mocov2_resnet18_1xb64-coslr-10e_fmnist.py',
                 'configs/hcsc/hcsc_resnet18_1xb64-coslr-10e_fmnist.py'):
        model = MODELS.build(Config.fromfile(path).model)
        ema = getattr(model, 'base', model).encoder_k
        assert type(ema).__name__ == \
            'OwnBuffersExponentialMovingAverage', path
        pickle.loads(pickle.dumps(ema))  # a module-level class
        copy.deepcopy(model)
    moco = MODELS.build(
        Config.fromfile(
            'configs/hirl/hirl-mocov3_vit-tiny-p4_1xb64-coslr-10e_fmnist.py').
        model)
    assert type(moco.base.momentum_encoder).__name__ == 'OwnBuffersCosineEMA'


def test_losses_of_a_training_step_do_not_change():
    """Training-mode BN normalises with the batch: the loss of a step is
    the same with mmengine's buffer copy and with own statistics."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(
        'configs/mocov2/mocov2_resnet18_1xb64-coslr-10e_fmnist.py')
    torch.manual_seed(0)
    plain = MODELS.build(cfg.model).train()
    ours = copy.deepcopy(plain)
    keep_own_buffers(ours)
    g = torch.Generator().manual_seed(1)
    samples = [DataSample() for _ in range(4)]
    for _ in range(3):
        views = [torch.randn(4, 3, 32, 32, generator=g) for _ in range(2)]
        torch.manual_seed(2)
        a = plain.loss(views, samples)['loss']
        torch.manual_seed(2)
        b = ours.loss(views, samples)['loss']
        torch.testing.assert_close(a, b)
    assert not torch.allclose(plain.encoder_k.module[0].bn1.running_mean,
                              ours.encoder_k.module[0].bn1.running_mean)
