import math
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from toy import CONFIGS, toy_cfg

from hirl_mm.clustering import cluster_concentration, hierarchical_kmeans
from hirl_mm.models.losses import (instance_selective_loss,
                                   selection_keep_probability)

HCSC = osp.join(CONFIGS, 'hcsc', 'hcsc_resnet18_1xb64-coslr-10e_fmnist.py')


def build(**kwargs):
    cfg = toy_cfg('/tmp/unused', config=HCSC)
    return MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor, **kwargs))


def test_concentration_hand_example():
    # cluster 0: distances 1, 2; cluster 1: 3, 3, 3; cluster 2: one point
    sq = np.array([1., 4., 9., 9., 9., 0.25])
    assign = np.array([0, 0, 1, 1, 1, 2])
    phi = np.array([1.5 / math.log(12), 3 / math.log(13), 0])
    phi[2] = phi[:2].max()  # a singleton takes the largest phi
    np.testing.assert_allclose(
        cluster_concentration(sq, assign, 3, percentiles=(0, 100)),
        phi / phi.mean(),
        rtol=1e-6)
    # clipping to the 10th-90th percentile
    out = cluster_concentration(sq, assign, 3)
    lo, hi = np.percentile(phi, (10, 90))
    clipped = np.clip(phi, lo, hi)
    np.testing.assert_allclose(out, clipped / clipped.mean(), rtol=1e-6)


def test_collapsed_clusters_give_finite_keep_probabilities():
    """Clusters of identical points (HCSC's representation collapsed on
    seed 2 of the protocol and training stopped on NaN keep probabilities):
    phi 0 as the reference computes it, temperatures floored at the
    reference's 1e-3, equal concentrations when every cluster collapsed."""
    assign = np.array([0, 0, 1, 1, 2, 2])
    sq = np.array([0., 0., 4., 4., 1., 1.])  # cluster 0: identical points
    phi = np.array([0, 2 / math.log(12), 1 / math.log(12)])
    conc = cluster_concentration(sq, assign, 3, percentiles=(0, 100))
    np.testing.assert_allclose(conc, phi / phi.mean(), rtol=1e-6)
    np.testing.assert_array_equal(
        cluster_concentration(np.zeros(6), assign, 3), np.ones(3))
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'hcsc', 'hcsc_resnet18_1xb64-coslr-10e_fmnist.py'))
    model = MODELS.build(cfg.model)
    tree = hierarchical_kmeans(torch.randn(40, 128), [3, 2], nredo=1)
    model.prototypes.update(tree, 0, [torch.from_numpy(conc), torch.ones(2)])
    temps = model.level_temperatures(0)
    assert float(temps[0]) == pytest.approx(1e-3)
    torch.testing.assert_close(temps[1:],
                               model.temperature * torch.from_numpy(conc[1:]))
    keep = selection_keep_probability(
        F.normalize(torch.randn(5, 128), dim=1), model.prototypes.centroids[0],
        temps, torch.tensor([0, 1]))
    assert torch.isfinite(keep).all()


def test_selection_probability_hand_computation():
    cent = torch.tensor([[1., 0.], [0., 1.]])
    conc = torch.tensor([0.5, 0.25])
    keys = torch.tensor([[1., 0.], [0.6, 0.8]])
    targets = torch.tensor([0, 1])
    keep = selection_keep_probability(keys, cent, conc, targets)
    # p(c | k) = softmax_c(k . c / phi_c)
    p0 = torch.softmax(torch.tensor([1 / 0.5, 0 / 0.25]), 0)
    p1 = torch.softmax(torch.tensor([0.6 / 0.5, 0.8 / 0.25]), 0)
    expected = 1 - torch.tensor([[p0[0], p1[0]], [p0[1], p1[1]]])
    torch.testing.assert_close(keep, expected)


def test_own_cluster_negatives_dropped_far_ones_kept():
    cent = torch.eye(4)
    conc = torch.full((4, ), 0.02)
    keys = torch.eye(4)[[0, 0, 3]]  # two keys of cluster 0, one of 3
    keep = selection_keep_probability(keys, cent, conc, torch.tensor([0]))
    assert keep[0, 0] < 1e-6 and keep[0, 1] < 1e-6
    # the reference clamps the keep probability at 0.999 (gyfastas/HCSC
    # hcsc/hcsc.py l.167): even an unrelated key is dropped 1 time in 1000
    assert keep[0, 2] == pytest.approx(0.999)
    prototype_clamp = selection_keep_probability(keys, cent, conc,
                                                 torch.tensor([0]),
                                                 (1e-4, 0.999))
    assert prototype_clamp[0, 0] == pytest.approx(1e-4)  # l.404


def test_drop_and_zero_modes():
    l_pos = torch.tensor([[0.5]])
    l_neg = torch.tensor([[0.2, 0.9]])
    keep = torch.tensor([[True, False]])
    t = 0.2
    model = build()
    assert model.temperature == t and model.drop_mode == 'drop'
    drop = instance_selective_loss(l_pos, l_neg, keep, t)
    expected = -math.log(
        math.exp(0.5 / t) / (math.exp(0.5 / t) + math.exp(0.2 / t)))
    assert drop.item() == pytest.approx(expected, rel=1e-5)
    assert build(drop_mode='zero').drop_mode == 'zero'
    zero = instance_selective_loss(l_pos, l_neg, keep, t, 'zero')
    expected = -math.log(
        math.exp(0.5 / t) / (math.exp(0.5 / t) + math.exp(0.2 / t) + 1))
    assert zero.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match='drop_mode'):
        build(drop_mode='other')
    with pytest.raises(ValueError, match='drop_mode'):
        instance_selective_loss(l_pos, l_neg, keep, t, 'other')


def filled_model(seed=0):
    torch.manual_seed(seed)
    model = build(num_clusters=[8, 3])
    feats = F.normalize(torch.randn(40, 128), dim=1).numpy()
    res = hierarchical_kmeans(feats, [8, 3], nredo=1, seed=seed)
    model.prototypes.update(res, 0, res.concentrations())
    return model, res


def test_prototype_negatives_exclude_batch_positives():
    model, res = filled_model()
    paths = torch.from_numpy(res.paths()[:6])
    for lvl in range(2):
        for _ in range(20):
            neg = model.proto_negatives(paths, lvl)
            assert neg.shape == (6, model.num_clusters[lvl])
            assert not neg[:, paths[:, lvl].unique()].any()
    # the top level uses every non-positive prototype
    top = model.proto_negatives(paths, 1)
    others = [c for c in range(3) if c not in paths[:, 1].tolist()]
    assert top[:, others].all()


def test_prototype_negatives_follow_the_stored_tree():
    # configured [8, 3], stored tree [6, 2] (e.g. from a checkpoint)
    torch.manual_seed(0)
    model = build(num_clusters=[8, 3])
    feats = F.normalize(torch.randn(40, 128), dim=1).numpy()
    res = hierarchical_kmeans(feats, [6, 2], nredo=1, seed=0)
    model.prototypes.update(res, 0, res.concentrations())
    paths = torch.from_numpy(res.paths()[:5])
    assert model.proto_negatives(paths, 0).shape == (5, 6)
    assert model.proto_negatives(paths, 1).shape == (5, 2)
    q = F.normalize(torch.randn(5, 128), dim=1)
    keeps = [torch.ones(5, 16, dtype=torch.bool)] * 2
    queue = F.normalize(torch.randn(128, 16), dim=0)
    terms = model._selective_terms(q, q, queue, paths, keeps)
    assert all(torch.isfinite(t) for t in terms)


def test_zero_mode_reaches_the_prototype_term():
    model, res = filled_model()
    model.drop_mode = 'zero'
    from hirl_mm.models.losses import prototype_selective_loss
    paths = torch.from_numpy(res.paths()[:6])
    q = F.normalize(torch.randn(6, 128), dim=1)
    keeps = [torch.ones(6, 16, dtype=torch.bool)] * 2
    queue = F.normalize(torch.randn(128, 16), dim=0)
    torch.manual_seed(3)
    _, proto = model._selective_terms(q, q, queue, paths, keeps)
    torch.manual_seed(3)
    protos, t = model.prototypes, model.temperature
    expected = sum(
        prototype_selective_loss(q, protos.centroids[lvl], t *
                                 protos.concentrations[lvl], paths[:, lvl],
                                 model.proto_negatives(paths, lvl), 'zero')
        for lvl in range(2)) / 2
    assert torch.equal(proto, expected)


def test_training_terms(tmp_path):
    cfg = toy_cfg(
        tmp_path,
        config=HCSC,
        max_epochs=2,
        warmup_epochs=1,
        num_clusters=(15, 5),
        batch_size=16)  # divides the queue
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub.log_scalars
    assert 'train/loss_ins' in hub and 'train/loss_proto' in hub
    assert math.isfinite(hub['train/loss_ins'].current())
    conc = runner.model.prototypes.concentrations
    assert [c.shape[0] for c in conc] == [15, 5]
    assert all(abs(float(c.mean()) - 1) < 1e-4 for c in conc)


def test_local_crop_terms():
    torch.manual_seed(0)
    model = build(num_clusters=[8])  # one level: no sampled proto negatives
    feats = F.normalize(torch.randn(40, 128), dim=1).numpy()
    res = hierarchical_kmeans(feats, [8], nredo=1, seed=0)
    model.prototypes.update(res, 0, res.concentrations())
    from mmpretrain.structures import DataSample
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(4)]
    im_q, im_k = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    queue = model.queue.clone()
    torch.manual_seed(1)
    losses = model.loss([im_q, im_k, im_q, im_q], samples)
    # local crops identical to the query: the query's terms once per crop,
    # summed as the reference (gyfastas/HCSC pretrain.py l.213-248)
    assert set(losses) == {
        'loss_ins', 'loss_proto', 'loss_ins_local', 'loss_proto_local'
    }
    torch.testing.assert_close(losses['loss_ins_local'],
                               2 * losses['loss_ins'])
    torch.testing.assert_close(losses['loss_proto_local'],
                               2 * losses['loss_proto'])
    # crops of other sizes: finite terms that reach the backbone
    model.queue.copy_(queue)
    losses = model.loss(
        [im_q, im_k,
         torch.randn(4, 3, 20, 20),
         torch.randn(4, 3, 16, 16)], samples)
    assert all(torch.isfinite(v) for v in losses.values())
    losses['loss_ins_local'].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_local_moco_terms_before_the_clustering():
    model = build(num_clusters=[8])
    from mmpretrain.structures import DataSample
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(4)]
    im_q, im_k = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    losses = model.loss([im_q, im_k, im_q, im_q, im_q], samples)
    assert set(losses) == {'loss', 'loss_local'}
    torch.testing.assert_close(losses['loss_local'], 3 * losses['loss'])


def test_multi_crop_configs_use_the_reference_ranges():
    ranges = [(0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429)]
    for name in ('hcsc_resnet18_1xb64-mcrop-1-4-coslr-10e_fmnist.py',
                 'hcsc_resnet50_8xb32-mcrop-1-4-coslr-200e_in1k.py'):
        cfg = Config.fromfile(osp.join(CONFIGS, 'hcsc', name))
        views = cfg.train_dataloader.dataset.pipeline[1]
        assert views.num_views == [2, 1, 1, 1, 1]
        assert [tuple(v[0]['crop_ratio_range'])
                for v in views.transforms[1:]] == ranges
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'hcsc', 'hcsc_resnet50_8xb32-coslr-200e_in1k.py'))
    assert cfg.model.drop_mode == 'zero'  # the reference code's


def test_multi_crop_training(tmp_path):
    cfg = toy_cfg(
        tmp_path,
        config=HCSC.replace('coslr', 'mcrop-1-4-coslr'),
        max_epochs=2,
        warmup_epochs=1,
        num_clusters=(15, 5),
        num_train=4,
        batch_size=16)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub.log_scalars
    for key in ('loss_ins', 'loss_proto', 'loss_ins_local',
                'loss_proto_local'):
        assert math.isfinite(hub[f'train/{key}'].current())
    assert 'train/loss_local' in hub  # the warm-up epoch: MoCo terms
