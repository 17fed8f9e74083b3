"""The row pairing helpers: rows traced by storage, matched by hash."""
import torch

from hirl_mm.models.utils.row_pairing import match_views, row_offset


def test_row_pairing_helpers():
    x = torch.randn(5, 3)
    assert row_offset(x[2:4], x) == 2 and row_offset(x, x) == 0
    assert row_offset(x.clone(), x) is None
    assert row_offset(x[:, :2], x) is None  # not whole rows
    y, z = torch.randn(4, 2, 2), torch.randn(4, 2, 2)
    # two segments of rows: y interleaved with z, then y again
    rows = torch.stack([y, z], 1).flatten(0, 1)
    index = match_views([rows, y[:2]], [y, z, -y])
    assert index[0].tolist() == [0, 2, 4, 6]
    assert index[1].tolist() == [1, 3, 5, 7]
    assert index[2].tolist() == [-1] * 4


def test_rows_of_a_view_are_paired_by_storage_as_by_hash():
    """Segments that are rows of a view (SimSiam, MoCo's query) skip the
    hashing; the pairing is the one the hashes give on copies."""
    y, z = torch.randn(6, 2, 2), torch.randn(6, 2, 2)
    for segments in ([y, z], [z[3:], y, z[:3]], [y[1:4], z, y]):
        by_storage = match_views(segments, [y, z, -y])
        by_hash = match_views([s.clone() for s in segments], [y, z, -y])
        assert torch.equal(by_storage, by_hash)
    # a mix: one segment aliased, one a copy
    mixed = match_views([y[:3], z.clone(), y[3:].clone()], [y, z])
    assert mixed.tolist() == [[0, 1, 2, 9, 10, 11], [3, 4, 5, 6, 7, 8]]
