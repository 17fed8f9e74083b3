"""PrototypeMemoryBank: one row per image, grown as needed, and its shard."""
import pytest
import torch
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
