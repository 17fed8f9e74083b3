import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from toy import CONFIGS

from hirl_mm.clustering import hierarchical_kmeans
from hirl_mm.models.utils import HierarchicalPrototypeMixin

HIRL_CONFIGS = {
    name:
    osp.join(CONFIGS, 'hirl', f'hirl-{name}_resnet18_1xb64-coslr-10e_'
             'fmnist.py')
    for name in ('simsiam', 'mocov2', 'byol')
}


def build(name, **overrides):
    cfg = Config.fromfile(HIRL_CONFIGS[name])
    model_cfg = dict(cfg.model, data_preprocessor=cfg.data_preprocessor)
    model_cfg.update(num_clusters=[6, 2], **overrides)
    return MODELS.build(model_cfg)


def batch(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [
        torch.randint(0, 255, (n, 3, size, size), generator=g)
        for _ in range(2)
    ]
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(n)]
    return dict(inputs=views, data_samples=samples)


def fill_prototypes(model, n=8):
    data = model.data_preprocessor(batch(n), False)
    feats = torch.cat([model.extract_proto_feat(data['inputs'][0])] * 2)
    feats = feats + 1e-3 * torch.randn_like(feats)
    res = hierarchical_kmeans(
        feats.numpy(), model.num_clusters, nredo=1, min_points_per_centroid=1)
    model.load_clustering(res, epoch=0)


@pytest.mark.parametrize('name', ['simsiam', 'mocov2', 'byol'])
def test_wrapper_composes_by_config(name):
    torch.manual_seed(0)
    MessageHub.get_current_instance().update_info('max_iters', 100)  # BYOL
    model = build(name)
    branch = dict(
        simsiam='online', mocov2='encoder_k', byol='target_net')[name]
    assert model.proto_branch == branch
    model.train()
    optim = torch.optim.SGD(model.parameters(), lr=0.1)

    calls = []
    model.base.backbone.register_forward_hook(lambda *a: calls.append(1))
    losses = model.loss(**model.data_preprocessor(batch(), True))
    assert 'loss_spd' not in losses  # no prototypes yet
    base_calls = len(calls)

    fill_prototypes(model)
    calls.clear()
    spd = []
    for _ in range(4):  # a fixed batch: the SPD loss must go down
        losses = model.loss(**model.data_preprocessor(batch(), True))
        assert set(losses) >= {'loss', 'loss_spd'}
        assert all(torch.isfinite(v) for v in losses.values())
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
        spd.append(losses['loss_spd'].item())
    # the projection is captured, not recomputed: no extra backbone pass
    assert len(calls) == 4 * base_calls
    assert spd[-1] < spd[0]
    assert model.hirl_neck.mlps[0][0].weight.grad.abs().sum() > 0


def test_checkpoint_keeps_base_key_names():
    model = build('mocov2')
    fill_prototypes(model)
    state = model.state_dict()
    assert 'backbone.conv1.weight' in state and 'queue' in state
    assert 'hirl_neck.mlps.0.0.weight' in state
    assert 'prototypes.centroids_0' in state
    assert not any(k.startswith('base.') for k in state)

    other = build('mocov2')
    assert other.prototypes.assignments.numel() == 0
    other.load_state_dict(state, strict=True)
    assert torch.equal(other.prototypes.assignments,
                       model.prototypes.assignments)
    assert torch.equal(other.base.backbone.conv1.weight,
                       model.base.backbone.conv1.weight)
    assert other.prototypes.ready

    # A plain MoCo checkpoint loads into HIRL as well.
    plain = MODELS.build(
        dict(Config.fromfile(HIRL_CONFIGS['mocov2']).model.base))
    missing, unexpected = build('mocov2').load_state_dict(
        plain.state_dict(), strict=False)
    assert not unexpected
    assert all(k.startswith(('hirl_neck', 'prototypes')) for k in missing)


def test_bad_base_configs_are_named():
    with pytest.raises(KeyError, match='NoSuchSSL'):
        build('simsiam', base=dict(type='NoSuchSSL'))
    with pytest.raises(ValueError, match="proj_module='projector'"):
        build('simsiam', proj_module='projector')
    model = build('simsiam', proj_module='head')
    model.train()
    fill_prototypes(model)
    # SimSiam.loss calls head.loss, not head(): the hook never fires.
    with pytest.raises(RuntimeError, match='found no online projection'):
        model.loss(**model.data_preprocessor(batch(), True))


def test_extract_proto_feat_is_normalised():
    model = build('simsiam').eval()
    data = model.data_preprocessor(batch(4), False)
    feats = model.extract_proto_feat(data['inputs'][0])
    assert feats.shape == (4, 512)
    np.testing.assert_allclose(feats.norm(dim=1).numpy(), 1, rtol=1e-5)


def test_hirl_and_hcsc_declare_the_prototype_interface():
    assert issubclass(MODELS.get('HCSC'), HierarchicalPrototypeMixin)
    model = build('simsiam')
    assert isinstance(model, HierarchicalPrototypeMixin)
    assert model.num_clusters == [6, 2] and model.prototype_epoch == -1
    fill_prototypes(model)
    assert model.prototype_epoch == 0
    assert [len(c) for c in model.prototypes.concentrations] == [6, 2]
