"""PrototypeMemoryBank: one row per image, momentum rows that follow their
image across ranks, and what HIRL records into it."""
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from hirl_mm.models.utils import PrototypeMemoryBank


def feats_of(ids, dim=4, scale=1.):
    """Image i's feature: a fixed random vector (not normalised)."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(100, dim, generator=gen)
    return scale * table[torch.as_tensor(ids)]


def test_rows_are_normalised_unique_and_the_latest():
    bank = PrototypeMemoryBank(10)
    bank.record(feats_of([3, 1]), torch.tensor([3, 1]))
    # round_up padding repeats ids, in a batch and across batches
    bank.record(feats_of([5, 3, 5]), torch.tensor([5, 3, 5]))
    bank.record(feats_of([1], scale=-2.), torch.tensor([1]))
    feats, ids, missing = bank.shard()
    # rows in order of first appearance (by id within a batch)
    assert len(bank) == 3 and ids.tolist() == [1, 3, 5]
    expected = F.normalize(feats_of([1, 3, 5]), dim=1)
    expected[0] *= -1  # image 1's latest feature
    torch.testing.assert_close(feats, expected)
    assert missing.tolist() == [0, 2, 4, 6, 7, 8, 9]
    # one process: room for every image from the start
    assert len(bank.feats) == 10


def test_storage_is_a_ranks_share_grown_as_needed(monkeypatch):
    from hirl_mm.models.utils import memory_bank
    monkeypatch.setattr(memory_bank, 'get_world_size', lambda: 4)
    bank = PrototypeMemoryBank(10)
    bank.record(feats_of([7, 2]), torch.tensor([7, 2]))
    assert len(bank.feats) == 3  # ceil(10 / 4)
    bank.record(feats_of([1, 2, 3, 4]), torch.tensor([1, 2, 3, 4]))
    assert len(bank) == 5 and len(bank.feats) == 6  # doubled
    bank.record(feats_of(range(10)), torch.arange(10))
    assert len(bank) == len(bank.feats) == 10  # at most N
    torch.testing.assert_close(bank.feats[bank.row_of[4]],
                               F.normalize(feats_of([4]), dim=1)[0])


def test_dropping_rows_keeps_the_lookup_consistent():
    bank = PrototypeMemoryBank(8)
    bank.record(feats_of([6, 0, 3, 5, 1]), torch.tensor([6, 0, 3, 5, 1]))
    # rows hold ids 0, 1, 3, 5, 6; drop 1 and 6 (a lower rank has them)
    bank._drop(torch.tensor([False, True, False, False, True]))
    assert len(bank) == 3 and sorted(bank.ids[:3].tolist()) == [0, 3, 5]
    for i in (0, 3, 5):
        row = int(bank.row_of[i])
        assert int(bank.ids[row]) == i
        torch.testing.assert_close(bank.feats[row],
                                   F.normalize(feats_of([i]), dim=1)[0])
    assert int(bank.row_of[1]) == int(bank.row_of[6]) == -1


def test_reset_forgets_rows_and_keeps_storage():
    bank = PrototypeMemoryBank(6)
    bank.record(feats_of([0, 1, 2]), torch.tensor([0, 1, 2]))
    storage = bank.feats
    bank.reset()
    assert len(bank) == 0 and int((bank.row_of >= 0).sum()) == 0
    bank.record(feats_of([2]), torch.tensor([2]))
    feats, ids, missing = bank.shard()
    assert bank.feats is storage and ids.tolist() == [2]
    assert len(missing) == 5


def test_an_empty_bank_misses_every_image():
    feats, ids, missing = PrototypeMemoryBank(4).shard()
    assert feats is None and len(ids) == 0
    assert missing.tolist() == [0, 1, 2, 3]


def test_bad_input_is_named():
    bank = PrototypeMemoryBank(4)
    with pytest.raises(IndexError, match='sample_idx 4 is out of range'):
        bank.record(feats_of([0, 1]), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r'\(B, D\) and sample ids'):
        bank.record(feats_of([0, 1]), torch.tensor([0]))
    bank.record(feats_of([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match='holds 4-d features'):
        bank.record(feats_of([1], dim=3), torch.tensor([1]))
    with pytest.raises(ValueError, match='num_samples must be positive'):
        PrototypeMemoryBank(0)


def test_momentum_rows_average_the_views_and_the_steps():
    """NPID's update, by hand: a step's views of an image are averaged
    (unit rows), then ``v <- normalize(m v + (1 - m) f)``."""
    unit = F.normalize(feats_of([1, 2, 3]), dim=1)
    bank = PrototypeMemoryBank(10, momentum=0.75, views='all')
    # step 1: image 4's two views (unnormalised), image 7's one view
    bank.record(
        torch.stack([2 * unit[0], unit[1], unit[2]]), torch.tensor([4, 4, 7]))
    first = F.normalize(unit[0] + unit[1], dim=0)
    torch.testing.assert_close(bank.feats[bank.row_of[4]], first)
    torch.testing.assert_close(bank.feats[bank.row_of[7]], unit[2])
    # step 2: image 4 again, one view
    bank.record(-3 * unit[2:3], torch.tensor([4]))
    torch.testing.assert_close(
        bank.feats[bank.row_of[4]],
        F.normalize(0.75 * first - 0.25 * unit[2], dim=0))
    torch.testing.assert_close(bank.feats[bank.row_of[7]], unit[2])
    assert len(bank) == 2
    # momentum 0: the latest step's views, averaged
    bank = PrototypeMemoryBank(10)
    bank.record(unit[:1], torch.tensor([4]))
    bank.record(unit[1:], torch.tensor([4, 4]))
    torch.testing.assert_close(bank.feats[bank.row_of[4]],
                               F.normalize(unit[1] + unit[2], dim=0))


def test_bank_settings_are_checked():
    with pytest.raises(ValueError, match=r'momentum must be in \[0, 1\)'):
        PrototypeMemoryBank(4, momentum=1.)
    with pytest.raises(ValueError, match="views must be one of"):
        PrototypeMemoryBank(4, views='both')


# (rank: batches of ids) of two epochs: each image on one rank an epoch,
# on the other the next; a step of two views (ids twice); rank 1 has an
# empty step and fewer images (a short last batch)
EPOCHS = [{
    0: [[0, 3, 0, 3], [5, 6, 5, 6]],
    1: [[1, 2, 1, 2], []]
}, {
    0: [[1, 2], [4]],
    1: [[0, 3, 0, 3], [5, 6, 5, 6]]
}]


def step_feats(ids):
    """Features of a step's rows: another vector for each view."""
    return feats_of([i + 10 * pos for pos, i in enumerate(ids)]) \
        if ids else torch.zeros(0, 4)


def _record_epochs(bank, rank):
    for epoch in EPOCHS:
        for ids in epoch[rank]:
            bank.record(step_feats(ids), torch.tensor(ids, dtype=torch.long))


def _exchange_worker(rank, port, out_dir):
    from sim_nccl import simulated_nccl
    from worker_exit import end_worker
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    with simulated_nccl():
        bank = PrototypeMemoryBank(8, momentum=0.5, views='all')
        _record_epochs(bank, rank)
        feats, ids = (t.clone() for t in bank.rows())
        capacity = len(bank.feats)
        _, _, missing = bank.shard()
        try:  # rank 0's id is out of range: both ranks raise
            bank.record(feats_of([1]), torch.tensor([1 if rank else 8]))
            error = None
        except IndexError as e:
            error = str(e)
    torch.save(
        dict(
            feats=feats,
            ids=ids,
            capacity=capacity,
            missing=missing.cpu(),
            error=error),
        Path(out_dir) / f'{rank}.pth')
    end_worker()


def test_momentum_rows_live_on_their_images_rank_under_nccl_rules(tmp_path):
    """Two gloo ranks, collectives on the simulated NCCL device only: each
    image's row is on rank ``i % 2`` and averages its views of both epochs,
    whichever rank trained on them, as one process recording every step."""
    from sim_nccl import run_two_ranks
    ranks = run_two_ranks(_exchange_worker, tmp_path)
    one = PrototypeMemoryBank(8, momentum=0.5, views='all')
    for epoch in EPOCHS:  # one process: the steps of both ranks, in turn
        for step in range(2):
            ids = epoch[0][step] + epoch[1][step]
            feats = torch.cat([step_feats(epoch[r][step]) for r in (0, 1)])
            one.record(feats, torch.tensor(ids))
    for rank, out in enumerate(ranks):
        assert sorted(
            out['ids'].tolist()) == [i for i in range(7) if i % 2 == rank]
        assert out['capacity'] == 4  # ceil(8 / 2), preallocated
        for row, i in enumerate(out['ids'].tolist()):
            torch.testing.assert_close(out['feats'][row],
                                       one.feats[one.row_of[i]])
        assert out['missing'].tolist() == [7]  # no rank trained on it
    assert ranks[0]['error'] == ('sample_idx 8 is out of range for a memory '
                                 'bank of 8 images.')
    assert ranks[1]['error'] == ('A sample_idx is out of range for a memory '
                                 'bank of 8 images on another rank.')


def hirl_bank_rows(base, views_given, **kwargs):
    """Build a tiny HIRL on ``base``, record one step of ``views_given``
    into a bank of both views (momentum 0); the rows by id, and what the
    base neck output (its calls)."""
    from tiny_models import build, samples
    model = build(base, **kwargs)
    model.enable_memory_bank(32, views='all').recording = True
    necks = []
    model.base.neck.register_forward_hook(lambda m, i, o: necks.append(
        (o if isinstance(o, torch.Tensor) else o[0]).detach()))
    model.loss(views_given, samples())
    feats, ids, _ = model.memory_bank.shard()
    return model, dict(zip(ids.tolist(), feats)), necks


def mean_of(*rows):
    return F.normalize(sum(F.normalize(r, dim=0) for r in rows), dim=0)


def test_hirl_records_both_views_of_simsiam_and_simclr():
    from tiny_models import B, views

    # SimSiam projects each view in its own neck call
    _, rows, necks = hirl_bank_rows('SimSiam', views())
    assert sorted(rows) == list(range(10, 10 + B)) and len(necks) == 2
    for b in range(B):
        torch.testing.assert_close(rows[10 + b],
                                   mean_of(necks[0][b], necks[1][b]))
    # SimCLR interleaves the views in one call: b0v0, b0v1, b1v0, ...
    _, rows, necks = hirl_bank_rows('SimCLR', views())
    for b in range(B):
        torch.testing.assert_close(
            rows[10 + b], mean_of(necks[0][2 * b], necks[0][2 * b + 1]))


def test_hirl_records_the_predictions_of_both_views():
    from tiny_models import B, build, samples, views
    model = build('SimSiam', proto_branch='predictor')
    model.enable_memory_bank(32, views='all').recording = True
    preds = []
    model.base.head.predictor.register_forward_hook(
        lambda m, i, o: preds.append(o[0].detach()))
    model.loss(views(), samples())
    feats, ids, _ = model.memory_bank.shard()
    rows = dict(zip(ids.tolist(), feats))
    assert len(preds) == 2
    for b in range(B):
        torch.testing.assert_close(rows[10 + b],
                                   mean_of(preds[0][b], preds[1][b]))


def test_hirl_records_the_global_crops_of_multi_crop_only():
    """SwAV with 2 x 16 px + 2 x 8 px crops: the small crops are parts of
    an image, not the image; rows of the two global crops are averaged."""
    from tiny_models import BASES, B, build, samples
    BASES['SwAV-mcrop'] = dict(BASES['SwAV'])
    BASES['SwAV-mcrop']['head'] = dict(
        BASES['SwAV']['head'],
        loss=dict(BASES['SwAV']['head']['loss'], num_crops=[2, 2]))
    try:
        model = build('SwAV-mcrop', proto_branch='online')
    finally:
        del BASES['SwAV-mcrop']
    model.enable_memory_bank(32, views='all').recording = True
    g = torch.Generator().manual_seed(0)
    crops = [torch.randn(B, 3, 16, 16, generator=g) for _ in range(2)] + \
        [torch.randn(B, 3, 8, 8, generator=g) for _ in range(2)]
    necks = []
    model.base.neck.register_forward_hook(lambda m, i, o: necks.append(
        (o if isinstance(o, torch.Tensor) else o[0]).detach()))
    model.loss(crops, samples())
    feats, ids, _ = model.memory_bank.shard()
    rows = dict(zip(ids.tolist(), feats))
    proj = necks[0]  # 4B x D: global crops first, view by view
    assert proj.shape[0] == 4 * B and sorted(rows) == list(range(10, 10 + B))
    for b in range(B):
        torch.testing.assert_close(rows[10 + b], mean_of(proj[b], proj[B + b]))


def test_hirl_records_one_view_unless_asked_for_all():
    from tiny_models import B, build, samples, views
    model = build('SimSiam')
    model.enable_memory_bank(32).recording = True  # views='first'
    necks = []
    model.base.neck.register_forward_hook(
        lambda m, i, o: necks.append(o[0].detach()))
    model.loss(views(), samples())
    feats, ids, _ = model.memory_bank.shard()
    torch.testing.assert_close(feats[ids.argsort()],
                               F.normalize(necks[0], dim=1))
    assert len(ids) == B


@pytest.mark.parametrize('base,kwargs,expected', [
    ('SimSiam', {}, "proto_branch='online' (`neck` after `backbone`, "
     'running statistics), chosen for this base.'),
    ('MoCo', {}, "proto_branch='encoder_k' (`encoder_k` of the base), "
     'chosen for this base.'),
    ('SimSiam', dict(proto_branch='predictor'),
     "proto_branch='predictor' (`head.predictor` of the online "
     'projection).'),
])
def test_hirl_logs_the_prototype_branch_once(monkeypatch, base, kwargs,
                                             expected):
    from tiny_models import build

    from hirl_mm.models.algorithms import hirl
    logged = []
    monkeypatch.setattr(
        hirl, 'print_log', lambda msg, logger=None: logged.append(msg))
    build(base, **kwargs)
    assert len(logged) == 1
    assert logged[0].startswith(
        f'HIRL on {base}: the level MLPs embed the output of `neck`; the '
        'prototypes are built from ')
    assert logged[0].endswith(expected)
