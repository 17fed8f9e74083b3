"""The model parts on CUDA: prototype buffers, SPD, HCSC terms, HIRL.

Marked ``gpu``: skipped without CUDA; ``HIRL_MM_GPU_TESTS_ON_CPU=1`` runs
them on the CPU (``tools/dev/gpu_check.sh --cpu`` does). Each compares the
device against the CPU where the computation is deterministic.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from toy import CONFIGS

from hirl_mm.clustering import HierarchicalClustering
from hirl_mm.models import SPDHead
from hirl_mm.models.losses import (prototype_selective_loss,
                                   selection_keep_probability)
from hirl_mm.models.utils import HierarchicalPrototypes

pytestmark = pytest.mark.gpu

HIRL_SIMSIAM = osp.join(CONFIGS, 'hirl',
                        'hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py')
HCSC = osp.join(CONFIGS, 'hcsc', 'hcsc_resnet18_1xb64-coslr-10e_fmnist.py')


def random_tree(num_images, dim, num_clusters, seed=0):
    """A valid random tree: every cluster has a parent, unit centroids."""
    rng = np.random.RandomState(seed)
    centroids = [
        F.normalize(torch.from_numpy(rng.randn(k, dim)).float(),
                    dim=1).numpy() for k in num_clusters
    ]
    parents = [
        rng.permutation(np.arange(k) % nxt)
        for k, nxt in zip(num_clusters, num_clusters[1:])
    ]
    assignments = rng.permutation(np.arange(num_images) % num_clusters[0])
    members = [assignments] + parents
    distances = [rng.rand(len(m)) + 0.1 for m in members]
    return HierarchicalClustering(assignments, parents, centroids, distances)


def batch(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    views = [
        torch.randint(0, 255, (n, 3, size, size), generator=g)
        for _ in range(2)
    ]
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(n)]
    return dict(inputs=views, data_samples=samples)


def build(config, **overrides):
    cfg = Config.fromfile(config)
    return MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor, **overrides))


def test_prototype_buffers_live_on_the_device(device):
    tree = random_tree(12, 16, [6, 3, 2])
    cpu = HierarchicalPrototypes([6, 3, 2])
    cpu.load_clustering(tree, epoch=2)
    protos = HierarchicalPrototypes([6, 3, 2]).to(device)
    protos.load_clustering(tree, epoch=2)
    assert all(buf.device.type == device.type for buf in protos.buffers())
    idx = torch.tensor([0, 5, 11])
    assert torch.equal(protos.paths(idx.to(device)).cpu(), cpu.paths(idx))
    feats = torch.randn(20, 16)
    assert torch.equal(
        protos.assign(feats.to(device)).cpu(), cpu.assign(feats))
    # a device checkpoint loads into a fresh CPU model and back
    state = {k: v.cpu() for k, v in protos.state_dict().items()}
    fresh = HierarchicalPrototypes([6, 3, 2])
    fresh.load_state_dict(state)
    assert fresh.ready and torch.equal(fresh.assignments, cpu.assignments)
    fresh.to(device)
    assert fresh.centroids_2.device.type == device.type
    for a, b in zip(fresh.concentrations, cpu.concentrations):
        torch.testing.assert_close(a.cpu(), b)


def test_spd_loss_on_the_device_matches_the_cpu(device):
    torch.manual_seed(0)
    tree = random_tree(32, 8, [10, 4])
    centroids = [torch.from_numpy(c) for c in tree.centroids]
    parents = torch.from_numpy(tree.parents[0])
    z = [F.normalize(torch.randn(32, 8), dim=1) for _ in range(2)]
    for emb in z:
        emb.requires_grad_()
    pos = torch.from_numpy(tree.paths())
    head = SPDHead(num_neg_path=7)
    leaves = head.sample_negatives(32, 10, torch.device('cpu'))
    neg = torch.stack([leaves, parents[leaves]], dim=-1)
    ref = head.loss(z, pos, centroids, neg)
    ref.backward()

    on = [e.detach().to(device).requires_grad_() for e in z]
    loss = head.loss(on, pos.to(device), [c.to(device) for c in centroids],
                     neg.to(device))
    loss.backward()
    torch.testing.assert_close(loss.cpu(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(on[0].grad.cpu(), z[0].grad)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        low = head.loss(on, pos.to(device), [c.to(device) for c in centroids],
                        neg.to(device))
    assert torch.isfinite(low) and abs(float(low) - float(ref)) < 0.05


def test_hcsc_terms_on_the_device(device):
    torch.manual_seed(0)
    model = build(HCSC, num_clusters=[8, 3], queue_len=64)
    tree = random_tree(40, 128, [8, 3])
    model.prototypes.update(tree, 0, tree.concentrations())
    paths = torch.from_numpy(tree.paths()[:6])
    query = F.normalize(torch.randn(6, 128), dim=1)
    level0 = model.prototypes.centroids[0]
    conc = model.prototypes.concentrations[0]
    keep_cpu = selection_keep_probability(level0, level0, conc, paths[:, 0])
    loss_cpu = prototype_selective_loss(query, level0, conc, paths[:, 0],
                                        keep_cpu > 0.5)

    model.to(device)
    level0 = model.prototypes.centroids[0]
    conc = model.prototypes.concentrations[0]
    on = paths.to(device)
    keep = selection_keep_probability(level0, level0, conc, on[:, 0])
    torch.testing.assert_close(keep.cpu(), keep_cpu)
    loss = prototype_selective_loss(
        query.to(device), level0, conc, on[:, 0], keep > 0.5)
    torch.testing.assert_close(loss.cpu(), loss_cpu)
    for lvl in range(2):  # sampled: never a positive of the batch
        neg = model.proto_negatives(on, lvl)
        assert neg.device.type == device.type
        assert not neg[:, on[:, lvl].unique()].any()

    model.train()
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(4)]
    im_q, im_k = (torch.randn(4, 3, 16, 16, device=device) for _ in range(2))
    losses = model.loss([im_q, im_k], samples)
    assert set(losses) == {'loss_ins', 'loss_proto'}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_hirl_trains_on_the_device_with_bf16(device):
    # bf16 on CUDA; fp32 on the CPU, where bf16 convolutions are slow
    torch.manual_seed(0)
    MessageHub.get_current_instance().update_info('max_iters', 100)
    model = build(HIRL_SIMSIAM, num_clusters=[6, 2])
    tree = random_tree(8, 512, [6, 2])
    model.load_clustering(tree, epoch=0)
    ref = copy.deepcopy(model)
    model.to(device).train()
    assert all(p.device.type == device.type for p in model.parameters())
    optim = torch.optim.SGD(model.parameters(), lr=0.05)
    spd = []
    for _ in range(2):  # a fixed batch: the SPD loss must go down
        data = model.data_preprocessor(batch(size=16), True)
        assert data['inputs'][0].device.type == device.type
        with torch.autocast(
                device.type, dtype=torch.bfloat16,
                enabled=device.type == 'cuda'):
            losses = model.loss(**data)
        assert {'loss', 'loss_spd'} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values())
        optim.zero_grad()
        sum(losses.values()).backward()
        optim.step()
        spd.append(float(losses['loss_spd']))
    assert spd[-1] < spd[0]
    assert model.hirl_neck.mlps[0][0].weight.grad.abs().sum() > 0
    # the deterministic prototype features agree with the CPU
    model.eval()
    ref.eval()
    x = ref.data_preprocessor(batch(4, size=16), False)['inputs'][0]
    fresh = copy.deepcopy(ref).to(device)
    torch.testing.assert_close(
        fresh.extract_proto_feat(x.to(device)).cpu(),
        ref.extract_proto_feat(x),
        rtol=1e-3,
        atol=1e-3)


def test_rng_state_restored_from_a_checkpoint_mapped_to_the_device(device):
    """--resume maps the checkpoint to the training device; the generators
    take CPU byte tensors (failed on the first NCCL GPU check)."""
    from types import SimpleNamespace

    from hirl_mm.engine.hooks import RNGStateHook
    hook = RNGStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    expected = torch.rand(3)
    state = checkpoint['rng_state']
    state['torch'] = state['torch'].to(device)
    if 'cuda' in state:
        state['cuda'] = [s.to(device) for s in state['cuda']]
    hook.after_load_checkpoint(SimpleNamespace(_resume=True), checkpoint)
    hook.before_train(None)
    assert torch.equal(torch.rand(3), expected)
