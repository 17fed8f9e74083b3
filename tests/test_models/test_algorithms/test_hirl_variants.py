"""HIRL on every embedded SSL method, by configuration alone.

Every ``configs/hirl/hirl-*_fmnist.py`` is built at toy size, its prototypes
are built by the real ``HierarchicalPrototypeHook`` (feature pipeline,
extraction, hierarchical k-means), it trains two iterations past the warm-up
through its own optimizer wrapper, and on a fixed batch the SPD loss goes
down.
"""
import glob
import math
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmpretrain.registry import HOOKS, MODELS
from tiny_models import build_prototypes, toy_setup
from toy import CONFIGS

from hirl_mm.clustering import HierarchicalClustering
from hirl_mm.models.utils import HierarchicalPrototypes

EMBEDDED = sorted(glob.glob(osp.join(CONFIGS, 'hirl', 'hirl-*_fmnist.py')))
HIRL_SWAV = osp.join(CONFIGS, 'hirl',
                     'hirl-swav_resnet18_1xb64-mcrop-2-2-coslr-10e_fmnist.py')


def test_the_glob_covers_the_methods():
    names = [osp.basename(p).split('_')[0] for p in EMBEDDED]
    assert {
        'hirl-simsiam', 'hirl-mocov2', 'hirl-byol', 'hirl-swav', 'hirl-mocov3',
        'hirl-barlowtwins'
    } <= set(names)


@pytest.mark.parametrize(
    'path', EMBEDDED, ids=lambda p: osp.basename(p).split('_')[0])
def test_embedded_hirl_trains_past_warmup(path, tmp_path):
    model, optim_wrapper, loader, cfg = toy_setup(path, tmp_path)
    assert not model.prototypes.ready
    build_prototypes(model, loader, cfg)
    protos = model.prototypes
    assert protos.ready
    assert protos.assignments.shape == (len(loader.dataset), )
    assert [len(c) for c in protos.centroids] == model.num_clusters

    model.train()
    batches = iter(loader)
    for it in range(2):
        MessageHub.get_current_instance().update_info('iter', it)
        log_vars = model.train_step(next(batches), optim_wrapper)
        assert 'loss_spd' in log_vars
        assert all(math.isfinite(float(v)) for v in log_vars.values())

    # Optimise the SPD loss alone on one fixed batch (fixed negatives).
    data = model.data_preprocessor(next(batches), True)
    optim = torch.optim.SGD(model.parameters(), lr=0.05)
    spd = []
    for _ in range(4):
        torch.manual_seed(1)
        loss = model.loss(**data)['loss_spd']
        optim.zero_grad()
        loss.backward()
        optim.step()
        spd.append(loss.item())
    assert spd[-1] < spd[0], spd


def hand_made_tree():
    """Level 0: 4 prototypes on the unit circle; level 1: 2 halves;
    level 2: the root."""
    protos = HierarchicalPrototypes([4, 2, 1])
    c0 = torch.tensor([[1., 0.], [0., 1.], [-1., 0.], [0., -1.]])
    c1 = torch.tensor([[1., 1.], [-1., -1.]]) / math.sqrt(2)
    protos.update(
        HierarchicalClustering(
            assignments=torch.tensor([3, 3, 3]),
            centroids=[c0, c1, torch.tensor([[1., 0.]])],
            parents=[torch.tensor([0, 0, 1, 1]),
                     torch.tensor([0, 0])],
            distances=[]),
        epoch=0)
    return protos


def test_reassignment_on_a_hand_made_tree():
    protos = hand_made_tree()
    feats = torch.tensor([[2., 0.1], [0.1, 3.], [-1., 0.2], [0.3, -5.]])
    assert protos.assign(feats).tolist() == [[0, 0, 0], [1, 0, 0], [2, 1, 0],
                                             [3, 1, 0]]
    # the stored per-epoch assignments are not used
    assert protos.paths(torch.tensor([0])).tolist() == [[3, 1, 0]]
    with pytest.raises(ValueError, match='dimension 2'):
        protos.assign(torch.ones(2, 3))
    with pytest.raises(RuntimeError, match='not been built'):
        HierarchicalPrototypes([4, 2]).assign(feats)


@pytest.mark.parametrize('reassign', [True, False])
def test_hirl_swav_positive_paths(reassign, tmp_path, monkeypatch):
    """SwAV projects all 4 crops at once: HIRL embeds the first view's rows
    and, with ``reassign_each_iter``, re-assigns every iteration from the
    second view's rows (swapped, as the reference)."""
    model, _, loader, cfg = toy_setup(HIRL_SWAV, tmp_path)
    assert cfg.model.reassign_each_iter and model.reassign_each_iter
    model.reassign_each_iter = reassign
    build_prototypes(model, loader, cfg)
    # stored assignments that a re-assignment must overwrite
    model.prototypes.assignments.fill_(model.num_clusters[0] - 1)

    seen = {}
    neck_out = []
    model.base.neck.register_forward_hook(lambda m, i, o: neck_out.append(o))
    loss = model.hirl_head.loss
    monkeypatch.setattr(
        model.hirl_head, 'loss', lambda emb, pos, *a: seen.update(
            emb=emb, pos=pos) or loss(emb, pos, *a))
    model.train()
    data = model.data_preprocessor(next(iter(loader)), True)
    batch = len(data['data_samples'])
    model.loss(**data)

    assert neck_out[0].shape == (4 * batch, 128)  # 2 global + 2 local crops
    assert seen['emb'][0].shape == (batch, 128)
    if reassign:
        expected = model.prototypes.assign(neck_out[0][batch:2 * batch])
    else:
        idx = torch.tensor([ds.sample_idx for ds in data['data_samples']])
        expected = model.prototypes.paths(idx)
        assert (expected[:, 0] == model.num_clusters[0] - 1).all()
    assert torch.equal(seen['pos'], expected)


def test_reassignment_needs_online_prototypes():
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'hirl',
                 'hirl-mocov2_resnet18_1xb64-coslr-10e_fmnist.py'))
    with pytest.raises(ValueError, match="proto_branch='online'"):
        MODELS.build(dict(cfg.model, reassign_each_iter=True))


def test_swav_queue_hook_reaches_the_base_head(tmp_path):
    model, _, loader, cfg = toy_setup(HIRL_SWAV, tmp_path)
    hook_cfg = next(dict(h) for h in cfg.custom_hooks if h.type == 'SwAVHook')
    hook_cfg.pop('priority')
    hook = HOOKS.build(hook_cfg)
    runner = SimpleNamespace(
        model=model,
        epoch=hook.epoch_queue_starts,
        world_size=1,
        work_dir=str(tmp_path))
    hook.before_run(runner)
    hook.before_train_epoch(runner)
    queue = model.base.head.loss_module.queue
    assert model.head is model.base.head
    assert queue.shape == (2, 640, 128)
