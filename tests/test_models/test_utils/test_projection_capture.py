"""ProjectionCapture and its pairing helpers on a toy algorithm, without
HIRL: which rows it captures, pairs with the samples and hands the bank."""
import socket

import pytest
import torch
import torch.nn as nn

from hirl_mm.models.utils import ProjectionCapture
from hirl_mm.models.utils.projection_capture import (matched_rows, paired_view,
                                                     predicted_rows)

B, D = 4, 5
IDS = torch.arange(10, 10 + B)


class ToyBase(nn.Module):
    """An algorithm whose loss stacks its two views as SimCLR does (b0v0,
    b0v1, b1v0, ...) or projects them one call per view, predicts from the
    projection and maps a shuffled key view with a momentum branch."""

    def __init__(self, per_view: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.per_view = per_view
        self.backbone = nn.Conv2d(3, 4, 1)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(16, D))
        self.predictor = nn.Linear(D, D)
        self.encoder_k = nn.Sequential(
            nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(16, D))
        self.out = {}

    def loss(self, views):
        if self.per_view:
            z = [self.neck(self.backbone(v)) for v in views]
        else:
            z = [self.neck(self.backbone(torch.stack(views, 1).flatten(0, 1)))]
        self.out['z'] = z
        self.out['pred'] = [self.predictor(x) for x in z]
        perm = torch.tensor([2, 0, 3, 1])
        self.out.update(perm=perm, k=self.encoder_k(views[1][perm]))


def toy_views(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, 3, 2, 2, generator=g) for _ in range(2)]


def run(base, views, proj_module='neck', **kwargs):
    with ProjectionCapture(base, proj_module, **kwargs) as capture:
        base.loss(views)
    return capture


def test_interleaved_rows_are_paired_and_hooks_removed():
    base, views = ToyBase(), toy_views()
    capture = run(base, views)
    for m in (base.backbone, base.neck):
        assert not m._forward_hooks
    proj_in, proj_out = capture.projection
    assert proj_out is base.out['z'][0]
    index = capture.pair(0, views)
    assert index.tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    view, rows = paired_view(index, 'the rows')
    assert view == 0 and rows.tolist() == [0, 2, 4, 6]
    assert paired_view(index, 'the rows', after=0)[0] == 1
    with pytest.raises(RuntimeError, match='no input view after view 1'):
        paired_view(index, 'the rows', after=1)


def test_first_projection_call_unless_every():
    views = toy_views()
    first = run(ToyBase(per_view=True), views)
    assert len(first.proj) == len(first.calls) == 1
    every = run(ToyBase(per_view=True), views, every=True)
    assert len(every.proj) == len(every.calls) == 2
    assert every.pair(0, views)[0].tolist() == [0, 1, 2, 3]
    assert every.pair(1, views).tolist() == [[-1] * B, [0, 1, 2, 3]]


def test_no_projection_is_an_error():
    base = ToyBase()
    with ProjectionCapture(base, 'predictor') as capture:
        pass
    with pytest.raises(RuntimeError, match='found no online projection'):
        capture.projection
    with pytest.raises(ValueError, match='branch_input'):
        ProjectionCapture(base, 'neck', 'encoder_k', branch_input='rows')
    with pytest.raises(ValueError, match="proj_module='head'"):
        run(base, toy_views(), proj_module='head')
    assert not base.backbone._forward_hooks


@pytest.mark.parametrize('per_view', [False, True])
def test_bank_rows_of_the_projection(per_view):
    base, views = ToyBase(per_view), toy_views()
    capture = run(base, views)
    feats, ids = capture.bank_rows(capture.pair(0, views), views, IDS)
    z = base.out['z'][0]
    assert torch.equal(feats, z[0::2] if not per_view else z)
    assert ids.tolist() == IDS.tolist()
    # every view the step projects, each row under its sample
    capture = run(base, views, every=True)
    feats, ids = capture.bank_rows(capture.pair(0, views), views, IDS)
    z = base.out['z']
    expected = torch.cat([z[0][0::2], z[0][1::2]]) if not per_view \
        else torch.cat(z)
    assert torch.equal(feats, expected)
    assert ids.tolist() == IDS.tolist() * 2


def test_bank_rows_of_a_predictor():
    base, views = ToyBase(), toy_views()
    capture = run(base, views, branch='predictor', branch_input='projection')
    feats, ids = capture.bank_rows(capture.pair(0, views), views, IDS)
    assert torch.equal(feats, base.out['pred'][0][0::2])
    assert ids.tolist() == IDS.tolist()
    # rows the predictor did not predict from are refused
    proj = torch.randn(6, D)
    pred, predicted = predicted_rows(
        proj, [([proj[2:4]], torch.ones(2, 3))], every=False)
    assert predicted.tolist() == [False, False, True, True, False, False]
    assert pred.shape == (6, 3) and pred[2:4].eq(1).all()


def test_bank_rows_of_a_shuffled_momentum_branch():
    base, views = ToyBase(), toy_views()
    capture = run(base, views, branch='encoder_k')
    feats, ids = capture.bank_rows(capture.pair(0, views), views, IDS)
    assert torch.equal(feats, base.out['k'])
    assert ids.tolist() == IDS[base.out['perm']].tolist()


def test_matched_rows_by_storage_as_by_hash():
    """Branch images that are rows of a view are matched without hashing,
    as the hashes match a copy of them."""
    views, feats = toy_views(), torch.randn(2, D)
    for images in (views[1][1:3], views[1][1:3].clone()):
        rows, ids = matched_rows(feats, images, views, IDS, every=False)
        assert torch.equal(rows, feats) and ids.tolist() == [11, 12]
    with pytest.raises(RuntimeError, match='no image that reached `enc`'):
        matched_rows(feats, torch.randn(2, 3, 2, 2), views, IDS, False, 'enc')


def _rank_views(rank, b=4):
    """Rank ``rank``'s two views of its samples 10 * rank + [0, b)."""
    gen = torch.Generator().manual_seed(rank)
    return [torch.randn(b, 3, 2, 2, generator=gen) for _ in range(2)]


def _match_across_ranks(rank, world, port, queue):
    import os

    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        views = _rank_views(rank)
        # MoCo's batch shuffle: this rank's key images are the second views
        # of samples of both ranks (the global batch, permuted)
        keys = torch.cat([_rank_views(r)[1] for r in range(world)])
        order = torch.randperm(
            len(keys), generator=torch.Generator().manual_seed(7))[rank::world]
        # a key's feature names its true sample: 10 * rank + b
        truth = torch.tensor([10 * (i // 4) + i % 4 for i in range(8)])
        feats = truth[order].float()[:, None].expand(-1, 3)
        rows, ids = matched_rows(feats, keys[order], views,
                                 10 * rank + torch.arange(4), False)
        queue.put((rank, list(zip(ids.tolist(), rows[:, 0].tolist()))))
    finally:
        dist.destroy_process_group()


def test_momentum_rows_are_matched_across_ranks():
    """Two gloo ranks, key images shuffled across them: each key row is
    matched to the sample it is a view of, by the rank holding it."""
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_match_across_ranks, args=(r, 2, port, queue))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    rows = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(i for r in rows.values() for i, _ in r) == \
        [0, 1, 2, 3, 10, 11, 12, 13]
    for rank_rows in rows.values():  # the feature names its sample
        assert all(i == f for i, f in rank_rows)
