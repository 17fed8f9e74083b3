"""Fixed-point sums: exact, kept through the steps of a restart, and
independent of the order of weighted points."""
import pytest
import torch
import torch.nn.functional as F
from kmeans_helpers import blobs

from hirl_mm.clustering import fixed_point, lloyd, nearest


def test_fixed_point_sums_are_exact_through_float64(monkeypatch):
    """The CPU sums fixed-point integers in float64, moved to int64 every
    _EXACT_ROWS rows: equal to int64 sums of the rounded values."""
    gen = torch.Generator().manual_seed(0)
    points = F.normalize(torch.randn(1000, 24, generator=gen), dim=1)
    labels = torch.randint(0, 7, (1000, ), generator=gen)
    fixed = (points.double() * 2.0**32).round().long()
    expected = torch.zeros(
        7, 24, dtype=torch.long).index_add_(0, labels, fixed)
    for exact_rows in (2**20, 100):  # one move at the end / ten moves
        monkeypatch.setattr(fixed_point, '_EXACT_ROWS', exact_rows)
        sums = torch.zeros(7, 24, dtype=torch.long)
        acc = torch.zeros(7, 24, dtype=torch.float64)
        scaled = torch.empty(64, 24, dtype=torch.float64)
        pending = fixed_point._add_fixed_point(sums, acc, scaled, 0, points,
                                               labels)
        sums += acc.long()
        assert torch.equal(sums, expected)
        assert 0 < pending <= exact_rows


@pytest.mark.parametrize('int64_path', [False, True])
def test_sums_kept_through_steps_equal_sums_from_scratch(int64_path):
    """A restart moves only the rows that changed cluster in its kept
    fixed-point sums: bitwise what summing every row gives. Also through
    the GPU's int64 path (truncation, run here on CPU tensors)."""
    points = F.normalize(torch.from_numpy(blobs(n=900, k=9, seed=4)), dim=1)

    def sums():
        fixed = fixed_point.FixedPointSums(9, points.shape[1], points.device)
        fixed.gpu = int64_path
        return fixed

    kept = sums()
    centroids = points[:9].clone()
    for _ in range(4):
        out = lloyd._lloyd_step(points, None, centroids, 256, 'fp32', False,
                                False, kept)
        anew = lloyd._lloyd_step(points, None, centroids, 256, 'fp32', False,
                                 False, sums())
        assert torch.equal(out[0], anew[0]) and torch.equal(out[1], anew[1])
        assert out[2] == anew[2]
        centroids = out[0]
    assert len(kept.previous) == len(points)


def test_weighted_sums_do_not_depend_on_the_order():
    """Weighted sums are integers summed exactly in float64: any order of
    the points (a GPU's atomics) gives bitwise the same step."""
    gen = torch.Generator().manual_seed(0)
    points = F.normalize(torch.randn(700, 12, generator=gen), dim=1)
    weights = torch.rand(700, generator=gen, dtype=torch.float64) * 1e3
    centroids = points[:9].clone()
    scale = fixed_point.weight_scale(weights)
    ref = lloyd._weighted_step(points, None, weights, centroids, 256, 'fp32',
                               False, scale)
    for seed in range(3):
        perm = torch.randperm(700, generator=gen)
        out = lloyd._weighted_step(points[perm], None, weights[perm],
                                   centroids, 256, 'fp32', False, scale)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
        assert out[2] == ref[2]
    # within float32 of the float64 weighted means
    labels = nearest.NearestCentroid(centroids)(points)[1]
    means = torch.zeros(9, 12, dtype=torch.float64)
    means.index_add_(0, labels, points.double() * weights[:, None])
    totals = torch.zeros(9, dtype=torch.float64)
    totals.index_add_(0, labels, weights)
    torch.testing.assert_close(
        ref[0], (means / totals[:, None]).float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ref[1], totals, rtol=1e-12, atol=0)
