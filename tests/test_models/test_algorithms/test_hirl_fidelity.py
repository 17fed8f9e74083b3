"""HIRL against the reference's semantics.

Each test builds a tiny MMPretrain algorithm inline (ResNet-18 at 16 px) and
checks which rows HIRL takes: the sample pairing of the projection (SimCLR
interleaves its views, SwAV stacks them view by view, MoCo shuffles its key
batch), the swapped per-iteration re-assignment of HIRL-SwAV, negatives
drawn from the stored tree and the features handed to the memory bank.
"""
import pytest
import torch
import torch.nn.functional as F
from tiny_models import B, D, build, samples, views
from torch.nn.modules.batchnorm import _BatchNorm

from hirl_mm.clustering import HierarchicalClustering


def load_tree(model, level0=4, seed=0):
    """A random tree: ``level0`` leaves under 2 roots, images 10..15 in
    distinct leaves where possible."""
    g = torch.Generator().manual_seed(seed)
    model.prototypes.update(
        HierarchicalClustering(
            assignments=torch.arange(16) % level0,
            centroids=[
                F.normalize(torch.randn(level0, D, generator=g), dim=1),
                F.normalize(torch.randn(2, D, generator=g), dim=1)
            ],
            parents=[torch.arange(level0) % 2],
            distances=[]),
        epoch=0)


def capture(model, spy_head=False):
    """Record the base neck's outputs and what reaches HIRL's neck / head."""
    seen = dict(neck=[])
    model.base.neck.register_forward_hook(lambda m, i, o: seen['neck'].append(
        (o if isinstance(o, torch.Tensor) else o[0]).detach()))
    model.hirl_neck.register_forward_pre_hook(
        lambda m, args: seen.update(z=args[0].detach()))
    if spy_head:
        loss = model.hirl_head.loss
        model.hirl_head.loss = lambda emb, pos, cent, neg: seen.update(
            pos=pos, neg=neg) or loss(emb, pos, cent, neg)
    return seen


@pytest.mark.parametrize('identical', [True, False])
def test_simclr_interleaved_rows_are_paired(identical):
    """SimCLR stacks b0v0, b0v1, b1v0, ...: sample b is row 2b, not b."""
    model = build('SimCLR')
    load_tree(model)
    seen = capture(model)
    model.loss(views(identical), samples())
    proj = seen['neck'][0]  # 2B x D
    assert proj.shape == (2 * B, D)
    torch.testing.assert_close(seen['z'], proj[0::2])
    if identical:  # both rows of a sample are its image
        torch.testing.assert_close(proj[0::2], proj[1::2])
    # the view-major reading gives other samples' rows
    assert not torch.allclose(seen['z'], proj[:B])


def test_swav_view_major_rows_are_paired():
    """SwAV projects cat(view 0, view 1): sample b is row b."""
    model = build('SwAV', proto_branch='online')
    load_tree(model)
    seen = capture(model)
    model.loss(views(identical=True), samples())
    proj = seen['neck'][0]
    torch.testing.assert_close(seen['z'], proj[:B])
    torch.testing.assert_close(proj[:B], proj[B:])
    assert not torch.allclose(seen['z'], proj[0::2][:B])


def test_swav_reassignment_is_swapped():
    """As the reference (``iter_wise_assignment``: ``images[1]``), the
    positive paths come from the other view than the one SPD embeds."""
    model = build('SwAV', proto_branch='online', reassign_each_iter=True)
    load_tree(model)
    seen = capture(model, spy_head=True)
    model.loss(views(seed=3), samples())
    proj = seen['neck'][0]
    own, other = (model.prototypes.assign(p) for p in (proj[:B], proj[B:]))
    assert not torch.equal(own, other)  # the test can tell them apart
    assert torch.equal(seen['pos'], other)
    torch.testing.assert_close(seen['z'], proj[:B])


def test_mixed_inputs_are_refused():
    model = build('SimCLR')
    load_tree(model)
    model.base.backbone.register_forward_pre_hook(
        lambda m, args: (0.5 * (args[0] + args[0].flip(0)), ))
    with pytest.raises(RuntimeError, match='cannot pair'):
        model.loss(views(), samples())


@pytest.mark.parametrize('level0', [3, 7])
def test_negatives_come_from_the_stored_tree(level0):
    """A checkpoint's tree may have another size than ``num_clusters``."""
    model = build('SimCLR', num_clusters=(4, 2))
    load_tree(model, level0=level0)
    assert model.prototypes.cluster_sizes == [level0, 2]
    seen = capture(model, spy_head=True)
    model.loss(views(), samples())
    leaves = seen['neg'][..., 0]
    assert set(leaves.unique().tolist()) == set(range(level0))


def bank_rows(model):
    feats, ids, missing = model.memory_bank.shard()
    return dict(zip(ids.tolist(), feats))


def test_online_projection_is_recorded_by_sample():
    model = build('SimCLR')
    model.enable_memory_bank(32).recording = True
    seen = capture(model)
    losses = model.loss(views(), samples())
    assert 'loss_spd' not in losses  # recording works before the tree
    rows = bank_rows(model)
    assert sorted(rows) == list(range(10, 10 + B))
    proj = F.normalize(seen['neck'][0], dim=1)
    for b in range(B):
        torch.testing.assert_close(rows[10 + b], proj[2 * b])


def test_predictor_space_is_recorded_by_sample():
    model = build('SimSiam', proto_branch='predictor')
    model.enable_memory_bank(32).recording = True
    preds = []
    model.base.head.predictor.register_forward_hook(
        lambda m, i, o: preds.append(o[0].detach()))
    model.loss(views(), samples())
    rows = bank_rows(model)
    pred = F.normalize(preds[0], dim=1)  # the first view's predictions
    for b in range(B):
        torch.testing.assert_close(rows[10 + b], pred[b])


def test_momentum_branch_is_recorded_through_the_shuffle():
    """MoCo shuffles the key batch before ``encoder_k``: each sample still
    gets its own key row."""
    model = build('MoCo')
    assert model.proto_branch == 'encoder_k'
    model.enable_memory_bank(32).recording = True
    keys = []
    model.base.encoder_k.register_forward_pre_hook(
        lambda m, args: keys.append(args[0]))
    inputs = views()
    model.loss(inputs, samples())
    assert not torch.equal(keys[0], inputs[1])  # shuffled
    rows = bank_rows(model)
    assert sorted(rows) == list(range(10, 10 + B))
    with torch.no_grad():  # same parameters, batch statistics of the batch
        expected = F.normalize(model.base.encoder_k(inputs[1])[0], dim=1)
    for b in range(B):
        torch.testing.assert_close(
            rows[10 + b], expected[b], rtol=1e-4, atol=1e-5)


def test_prototype_spaces():
    model = build('SimSiam').eval()
    neck = model.base.neck
    x = views()[0]
    with torch.no_grad():
        feat = model.base.backbone(x)
        z_eval = neck(feat)[0]
        pred = model.base.head.predictor([z_eval])[0]
    stats = {k: v.clone() for k, v in neck.state_dict().items()}
    torch.testing.assert_close(
        model.extract_proto_feat(x), F.normalize(z_eval, dim=1))
    model.proto_branch = 'predictor'
    torch.testing.assert_close(
        model.extract_proto_feat(x), F.normalize(pred, dim=1))

    model.proto_branch = 'online_batch_stats'
    batch_feat = model.extract_proto_feat(x)
    for k, v in neck.state_dict().items():  # running statistics untouched
        assert torch.equal(v, stats[k]), k
    assert not neck.training
    norms = [m for m in neck.modules() if isinstance(m, _BatchNorm)]
    assert norms
    for m in norms:
        m.track_running_stats = False
        m.training = True
    with torch.no_grad():
        expected = F.normalize(neck(feat)[0], dim=1)
    torch.testing.assert_close(batch_feat, expected)
    assert not torch.allclose(batch_feat, F.normalize(z_eval, dim=1))


def test_bad_prototype_spaces_are_named():
    with pytest.raises(ValueError, match="proto_branch='predictor'"):
        build('SimCLR', proto_branch='predictor')
    with pytest.raises(ValueError, match='online_batch_stats'):
        build('SimSiam', proto_branch='predictor', reassign_each_iter=True)
