import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS
from tiny_models import ChannelMeans, hook_runner
from toy import toy_cfg

from hirl_mm.clustering import HierarchicalClustering, cluster_concentration
from hirl_mm.models.utils import (HierarchicalPrototypeMixin,
                                  HierarchicalPrototypes)


class Recorder(Hook):
    """Snapshots the prototypes per epoch and the loss keys per iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.protos, self.loss_keys, self.banks = {}, {}, {}

    def before_train_epoch(self, runner):
        model = runner.model
        self.protos[runner.epoch] = copy.deepcopy(
            model.prototypes.state_dict())
        bank = model.memory_bank
        if bank is not None:  # as the prototype hook left it
            rows = [None, None]
            if len(bank):
                rows = [t.clone() for t in bank.rows()]
            self.banks[runner.epoch] = (bank.recording, *rows)

    def after_train_iter(self, runner, batch_idx, data_batch, outputs):
        self.loss_keys.setdefault(runner.epoch, set()).update(outputs)


def run(cfg, resume_from=None):
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, resume_from
    runner = Runner.from_cfg(cfg)
    recorder = Recorder()
    runner.register_hook(recorder)
    runner.train()
    return runner, recorder


def test_hook_builds_prototypes_after_warmup(tmp_path):
    cfg = toy_cfg(tmp_path / 'straight', max_epochs=3, warmup_epochs=1)
    runner, rec = run(cfg)
    # No prototypes during the warm-up epoch, no SPD loss either.
    assert int(rec.protos[0]['epoch']) == -1
    assert rec.protos[0]['assignments'].numel() == 0
    assert 'loss_spd' not in rec.loss_keys[0]
    for epoch in (1, 2):
        state = rec.protos[epoch]
        assert int(state['epoch']) == epoch
        assert 'loss_spd' in rec.loss_keys[epoch]
        assert state['assignments'].shape == (120, )
        assert set(state['assignments'].tolist()) <= set(range(15))
        assert state['centroids_0'].shape == (15, 512)
        assert state['centroids_1'].shape == (5, 512)
        assert state['parents_0'].shape == (15, )
        assert int(state['parents_0'].max()) < 5
        torch.testing.assert_close(state['centroids_0'].norm(dim=1),
                                   torch.ones(15))

    # Checkpoints carry the tree the epoch trained with ...
    ckpt = torch.load(tmp_path / 'straight' / 'epoch_2.pth')
    for key, value in rec.protos[1].items():
        torch.testing.assert_close(ckpt['state_dict']['prototypes.' + key],
                                   value)
    # ... and resuming from the epoch-1 checkpoint rebuilds epoch 1's tree
    # exactly as the uninterrupted run did.
    cfg = toy_cfg(tmp_path / 'resumed', max_epochs=2, warmup_epochs=1)
    _, rec2 = run(cfg, resume_from=str(tmp_path / 'straight' / 'epoch_1.pth'))
    assert sorted(rec2.protos) == [1]
    for key, value in rec.protos[1].items():
        torch.testing.assert_close(rec2.protos[1][key], value)


def bank_cfg(work_dir, max_epochs):
    cfg = toy_cfg(work_dir, max_epochs=max_epochs, warmup_epochs=1)
    for hook in cfg.custom_hooks:
        if hook.type == 'HierarchicalPrototypeHook':
            hook.update(
                feature_source='memory_bank',
                bank_momentum=0.5,
                bank_views='all')
    return cfg


def test_momentum_bank_records_every_epoch_and_resumes_exactly(tmp_path):
    """Clusterings before epochs 1 and 2: epochs 0 and 1 record, the rows
    carry over (no reset), every epoch checkpoint holds them, and a run
    resumed from epoch_1.pth records on from them to the same tree."""
    _, rec = run(bank_cfg(tmp_path / 'straight', 3))
    recording = {e: b[0] for e, b in rec.banks.items()}
    assert recording == {0: True, 1: True, 2: False}
    assert rec.banks[0][1] is None  # nothing recorded before epoch 0
    # every image has its row from epoch 0 on, moved on by epoch 1
    for epoch in (1, 2):
        assert sorted(rec.banks[epoch][2].tolist()) == list(range(120))
    order = [rec.banks[e][2].argsort() for e in (1, 2)]
    moved = (rec.banks[1][1][order[0]] - rec.banks[2][1][order[1]]).norm(dim=1)
    assert bool((moved > 1e-4).all())
    for epoch in (1, 2, 3):  # the non-recording epoch's checkpoint too
        ckpt = torch.load(
            tmp_path / 'straight' / f'epoch_{epoch}.pth', weights_only=False)
        assert ckpt['memory_bank']['sample_idx'].shape == (120, )
    torch.testing.assert_close(
        torch.load(tmp_path / 'straight' / 'epoch_2.pth',
                   weights_only=False)['memory_bank']['feats'],
        rec.banks[2][1])

    _, resumed = run(
        bank_cfg(tmp_path / 'resumed', 3),
        resume_from=str(tmp_path / 'straight' / 'epoch_1.pth'))
    for epoch in (1, 2):
        for key, value in rec.protos[epoch].items():
            assert torch.equal(resumed.protos[epoch][key], value), key
        recording, feats, ids = resumed.banks[epoch]
        assert recording == rec.banks[epoch][0]
        assert torch.equal(ids, rec.banks[epoch][2])
        assert torch.equal(feats, rec.banks[epoch][1])


def test_cluster_counts_larger_than_data_fail_before_training(tmp_path):
    cfg = toy_cfg(tmp_path, num_clusters=(500, 5))
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=r'model\.num_clusters'):
        runner.train()
    assert not list(tmp_path.glob('epoch_*.pth'))


def hand_made_clustering():
    """6 points, level 0: 3 clusters, level 1: 2 clusters."""
    return HierarchicalClustering(
        assignments=np.array([0, 0, 1, 1, 2, 2]),
        parents=[np.array([0, 0, 1])],
        centroids=[
            np.array([[1., 0.], [.6, .8], [0., 1.]], dtype=np.float32),
            np.array([[.8, .6], [0., 1.]], dtype=np.float32)
        ],
        distances=[
            np.array([.01, .04, .01, .09, .04, .16]),
            np.array([.1, .1, .2])
        ])


def test_mixin_loads_a_hand_made_clustering():
    model = ChannelMeans([3, 2])
    assert model.num_clusters == [3, 2]
    assert model.prototype_epoch == -1
    assert not model.prototypes.ready

    clustering = hand_made_clustering()
    model.load_clustering(clustering, epoch=4)
    assert model.prototype_epoch == 4
    protos = model.prototypes
    assert protos.assignments.tolist() == [0, 0, 1, 1, 2, 2]
    assert protos.parents_0.tolist() == [0, 0, 1]
    for lvl in range(2):
        assert torch.equal(protos.centroids[lvl],
                           torch.from_numpy(clustering.centroids[lvl]))
    # the concentrations HCSC uses come with the tree
    members = [clustering.assignments, clustering.parents[0]]
    for lvl, k in enumerate((3, 2)):
        expected = cluster_concentration(clustering.distances[lvl],
                                         members[lvl], k)
        assert torch.equal(protos.concentrations[lvl],
                           torch.from_numpy(expected))
    assert protos.paths(torch.tensor([3, 5])).tolist() == [[1, 0], [2, 1]]
    # checkpoints keep the keys they had before the interface
    assert set(model.state_dict()) == {
        'prototypes.epoch', 'prototypes.assignments', 'prototypes.centroids_0',
        'prototypes.centroids_1', 'prototypes.parents_0',
        'prototypes.concentrations_0', 'prototypes.concentrations_1'
    }


def test_mixin_refuses_a_missing_or_mismatched_clustering():
    model = ChannelMeans([3, 2])
    with pytest.raises(ValueError, match='Rank 0 must pass'):
        model.load_clustering(None, epoch=0)
    three_levels = ChannelMeans([3, 2, 1])
    with pytest.raises(ValueError, match='2 levels, the prototypes 3'):
        three_levels.load_clustering(hand_made_clustering(), epoch=0)
    assert three_levels.prototype_epoch == -1


def test_mixin_declares_extract_proto_feat():

    class NoFeatures(HierarchicalPrototypeMixin, nn.Module):
        pass

    with pytest.raises(TypeError, match='extract_proto_feat'):
        NoFeatures()


def test_hook_refuses_a_model_without_the_mixin(tmp_path):

    class DuckTyped(BaseModel):
        """Has the attributes, not the declared interface."""

        def __init__(self):
            super().__init__()
            self.prototypes = HierarchicalPrototypes([4, 2])
            self.num_clusters = [4, 2]

        def forward(self, *args, **kwargs):
            pass

    hook, runner = hook_runner(DuckTyped(), tmp_path, epoch=1)
    with pytest.raises(TypeError, match='HierarchicalPrototypeMixin'):
        hook.before_train(runner)


def test_hook_drives_a_model_through_the_mixin(tmp_path):
    model = ChannelMeans([4, 2])
    hook, runner = hook_runner(model, tmp_path, epoch=1)
    assert hook.warmup_epochs == 1
    hook.before_train(runner)
    # the features the hook clusters: every image once, in sample order
    feats, sample_idx = hook.extract(model)
    dataset = hook.dataloader.dataset
    one_by_one = torch.cat([
        model.extract_proto_feat(dataset[i]['inputs'][None])
        for i in range(len(dataset))
    ])
    assert feats.shape == (30, 3)
    assert sample_idx.tolist() == list(range(30))
    torch.testing.assert_close(feats, one_by_one, rtol=1e-6, atol=0)

    hook.before_train_epoch(runner)
    assert model.prototype_epoch == 1
    assert model.prototypes.assignments.shape == (30, )
    assert [len(c) for c in model.prototypes.centroids] == [4, 2]
    # a resumed epoch whose tree is stored is not clustered again
    calls = model.calls
    hook.before_train_epoch(runner)
    assert model.calls == calls
    runner.epoch = 0  # warm-up: nothing happens
    hook.before_train_epoch(runner)
    assert model.calls == calls and model.prototype_epoch == 1
    # what each clustering logs (PhotoPatches has fine and coarse labels),
    # at the step of the next iteration, with mmengine's 1-based epoch
    logged = runner.visualizer.logged[1]
    assert logged['epoch'] == 2
    for key in ('seconds_features', 'seconds_kmeans', 'level1_objective',
                'level0_median_size', 'level1_largest_fraction',
                'level0_fine_nmi', 'level1_coarse_acc', 'level1_iterations'):
        assert np.isfinite(logged['prototypes/' + key]), key
    sizes = np.bincount(model.prototypes.assignments.numpy(), minlength=4)
    assert logged['prototypes/level0_nonempty'] == (sizes > 0).sum()
    assert logged['prototypes/level0_max_size'] == sizes.max()
    assert 'prototypes/level0_ari_vs_previous' not in logged
    # the same features again: the same partition, ARI 100
    runner.epoch, runner.iter = 2, 7
    hook.before_train_epoch(runner)
    assert runner.visualizer.logged[8][
        'prototypes/level0_ari_vs_previous'] == pytest.approx(100)
    assert runner.visualizer.logged[8]['epoch'] == 3


@pytest.mark.parametrize('resume', [False, True])
def test_load_from_resets_the_prototypes_and_resume_keeps_them(
        tmp_path, resume):
    model = ChannelMeans([3, 2])
    model.load_clustering(hand_made_clustering(), epoch=4)
    hook, runner = hook_runner(model, tmp_path, epoch=5)
    runner._load_from, runner._resume = 'checkpoint.pth', resume
    hook.before_train(runner)
    if resume:
        assert model.prototype_epoch == 4
        assert model.prototypes.assignments.tolist() == [0, 0, 1, 1, 2, 2]
    else:
        assert model.prototype_epoch == -1
        assert model.prototypes.assignments.numel() == 0
        assert all(c.numel() == 0 for c in model.prototypes.centroids)


def test_cluster_sizes_are_the_stored_trees():
    protos = HierarchicalPrototypes([5, 2])
    assert protos.cluster_sizes == [5, 2]  # before the first clustering
    # a checkpoint built with other num_clusters
    other = ChannelMeans([3, 2])
    other.load_clustering(hand_made_clustering(), epoch=0)
    protos.load_state_dict({
        k[len('prototypes.'):]: v
        for k, v in other.state_dict().items()
    })
    assert protos.cluster_sizes == [3, 2]
    protos.reset()
    assert protos.cluster_sizes == [5, 2] and not protos.ready


def test_hook_arguments_are_checked():
    with pytest.raises(ValueError, match='feature_source must be one of'):
        HOOKS.build(
            dict(type='HierarchicalPrototypeHook', feature_source='bank'))
    for bad in (dict(bank_momentum=1.), dict(bank_views='both')):
        with pytest.raises(ValueError, match=r'bank_momentum must be in'):
            HOOKS.build(dict(type='HierarchicalPrototypeHook', **bad))
    hook = HOOKS.build(
        dict(type='HierarchicalPrototypeHook', kmeans_cfg=dict(nredo=1)))
    # the reference's settings unless overridden
    assert hook.kmeans_cfg == dict(niter=20, nredo=1, init='random')
