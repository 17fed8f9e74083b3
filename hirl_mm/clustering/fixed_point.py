"""Per-cluster sums in fixed point, exact whatever the summation order.

L2-normalised points (|coordinate| <= 1) are scaled by 2^32 and summed as
int64. Integer addition is associative, so the sums (hence the centroids) do
not depend on the sharding, the summation order or a GPU's atomics; 2^31
points per cluster fit at a resolution of 2.3e-10, far below float32's.
Exactness also lets a restart keep its sums and move only the rows that
changed cluster.
"""
import math
from typing import Optional

import torch

SUM_SCALE = 2.0**32
OBJ_SCALE = 2.0**24  # squared distances <= 4: room for 2^37 points
_SUM_BLOCK = 1024  # rows converted to fixed point at a time (CPU)
_EXACT_ROWS = 2**20  # rows summed in float64 before moving to int64
_ROUND = 1.5 * 2.0**52  # x + _ROUND - _ROUND: x rounded to an integer


def _add_fixed_point(sums,
                     acc,
                     scaled,
                     pending,
                     points,
                     labels,
                     scale=SUM_SCALE):
    """CPU: add ``points`` to ``sums[labels]`` in fixed point, a cached
    block of rows at a time. The integers (|v| < 2^32) are summed in float64
    (its ``index_add_`` is faster than int64's), exactly: after at most
    2^20 rows every partial sum is an integer below 2^53; ``acc`` is then
    moved to the int64 ``sums``. ``scale=-SUM_SCALE`` subtracts exactly
    what was added (rounding to nearest is symmetric). Returns the rows
    pending in ``acc``."""
    for i in range(0, len(points), len(scaled)):
        j = min(len(points), i + len(scaled))
        if pending + j - i > _EXACT_ROWS:
            sums += acc.long()
            acc.zero_()
            pending = 0
        block = torch.mul(points[i:j], scale, out=scaled[:j - i])
        # to the nearest integer (|v| < 2^51)
        acc.index_add_(0, labels[i:j], block.add_(_ROUND).sub_(_ROUND))
        pending += j - i
    return pending


class FixedPointSums:
    """This rank's per-cluster sums of its rows in fixed point (K x D,
    int64), kept through the Lloyd steps of a restart: each step adds the
    rows that changed cluster to their new cluster and subtracts them from
    the old. Integer sums are exact, so this equals summing every row anew,
    and after the first steps few rows move (k-means' own convergence)."""

    def __init__(self, k: int, dim: int, device: torch.device) -> None:
        self.sums = torch.zeros((k, dim), dtype=torch.int64, device=device)
        self.previous: Optional[torch.Tensor] = None  # last step's labels
        self.gpu = device.type == 'cuda'
        if not self.gpu:  # see _add_fixed_point
            self.scaled = torch.empty((_SUM_BLOCK, dim), dtype=torch.float64)
            self.acc = torch.zeros((k, dim), dtype=torch.float64)
            self.pending = 0

    def _add(self, points, labels, scale=SUM_SCALE):
        if self.gpu:  # int64 atomics: one kernel; truncation is symmetric
            self.sums.index_add_(0, labels, points.mul(scale).long())
        else:
            self.pending = _add_fixed_point(self.sums, self.acc, self.scaled,
                                            self.pending, points, labels,
                                            scale)

    def assign(self, points: torch.Tensor, labels: torch.Tensor,
               start: int) -> None:
        """The step's rows ``start:start + len(labels)`` are ``points``,
        now in clusters ``labels``."""
        if self.previous is None:
            self._add(points, labels)
            return
        old = self.previous[start:start + len(labels)]
        moved = torch.nonzero(labels != old).flatten()
        if len(moved):
            moving = points[moved]
            self._add(moving, labels[moved])
            self._add(moving, old[moved], -SUM_SCALE)

    def finish(self, labels: torch.Tensor) -> torch.Tensor:
        """End of a step whose rows got ``labels``: the sums."""
        if not self.gpu:
            self.sums += self.acc.long()
            self.acc.zero_()
            self.pending = 0
        self.previous = labels
        return self.sums


def weight_scale(weights: torch.Tensor) -> float:
    """The power of two ``s`` of the weighted sums of a Lloyd step:
    ``s x sum(|w|) < 2^51``. Every term ``w x`` (|x| <= 1) and ``w d / 4``
    (squared distances d <= 4) scaled by ``s`` and rounded to an integer,
    every partial sum of them is an integer below 2^53: exact in float64,
    so the sums do not depend on their order (GPU atomics included). The
    terms lose at most ``0.5 / s``, i.e. 2^-31 of the total weight at 2^20
    images; weights lighter than ``0.5 / s`` count as 0."""
    total = math.fsum(weights.double().abs().cpu().tolist())  # exact
    if not math.isfinite(total):
        raise ValueError('weights must be finite.')
    return math.ldexp(1.0, 51 - math.frexp(total)[1]) if total > 0 else 1.0
