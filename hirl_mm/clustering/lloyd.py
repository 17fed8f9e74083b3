"""One level of k-means in torch, over shards of points held by the ranks.

DeepCluster-v2's distributed Lloyd iteration (facebookresearch/swav,
``main_deepclusterv2.py``, ``cluster_memory``): every rank assigns its own
points and the ranks all-reduce per-cluster sums and counts; points never
move. The rest follows faiss' ``Clustering::train`` (facebookresearch/faiss,
``faiss/Clustering.cpp``): a seeded training subsample above
``max_points_per_centroid`` points per centroid, random initial centroids
drawn from it, empty clusters re-seeded by splitting a cluster drawn with
probability growing with its size, ``nredo`` restarts keeping the lowest
objective of the last iteration.

Two choices make W ranks give bitwise the same result as one:

- Per-cluster sums are accumulated in int64 fixed point. Integer addition is
  associative, so the sums (hence the centroids) do not depend on the
  sharding, the summation order or a GPU's atomics. Points are L2-normalised
  (|coordinate| <= 1): a scale of 2^32 keeps 2^31 points per cluster from
  overflowing at a resolution of 2.3e-10, far below float32's. Exactness
  also lets a restart keep its sums and move only the rows that changed
  cluster.
- Points are assigned in chunks of one fixed shape (the last one padded with
  zeros), so every GEMM a point goes through has the same shape, whatever
  its position in the shard.
"""
import contextlib
import math
from typing import Iterator, NamedTuple, Optional, Tuple

import torch
from mmengine import dist

_SUM_SCALE = 2.0**32
_OBJ_SCALE = 2.0**24  # squared distances <= 4: room for 2^37 points
_SPLIT_EPS = 1 / 1024  # faiss' EPS of split_clusters
_SUM_BLOCK = 1024  # rows converted to fixed point at a time (CPU)
_EXACT_ROWS = 2**20  # rows summed in float64 before moving to int64
_ROUND = 1.5 * 2.0**52  # x + _ROUND - _ROUND: x rounded to an integer

PRECISIONS = ('fp32', 'tf32', 'bf16')


class LevelResult(NamedTuple):
    """k-means of one level; ``labels`` / ``distances`` of the local rows."""
    centroids: torch.Tensor  # K x D, the means (not normalised)
    labels: torch.Tensor  # n, int64
    distances: torch.Tensor  # n, squared distance to the centroid
    objective: float  # sum of squared distances over all ranks' points
    num_nonempty: int  # clusters with at least one point
    iterations: int = 0  # Lloyd iterations run, all restarts together


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def default_chunk_size(num_clusters: int,
                       num_points: int,
                       device: torch.device,
                       dim: Optional[int] = None) -> int:
    """Rows per assignment chunk, in multiples of 256: at most 4096 on CPU
    (faiss' own query block), a 64 MB score matrix and a 16 MB chunk of
    ``dim``-d points, at most 8192 and a 1 GB score matrix on a GPU, split
    into equal chunks over the ``num_points`` of all ranks. A function of
    global sizes only, so every rank and every world size uses the
    same."""
    if device.type == 'cuda':
        rows = min(8192, 2**28 // num_clusters)
    else:
        rows = min(4096, 2**24 // num_clusters, 2**22 // (dim or 1))
    rows = max(rows // 256 * 256, 256)
    # equal chunks: the last one is not mostly padding
    chunks = -(-num_points // rows)
    return max(-(-num_points // (chunks * 256)) * 256, 256)


def padded_chunks(
        points: torch.Tensor,
        rows: Optional[torch.Tensor],
        chunk_size: int,
        normalize: bool = True) -> Iterator[Tuple[int, torch.Tensor]]:
    """L2-normalised float32 chunks of ``points`` (or of its ``rows``).

    Yields ``(m, chunk)``: ``chunk`` is ``chunk_size x D``, its first ``m``
    rows the next points, the rest zeros: a reused buffer, or, for a full
    chunk of contiguous float32 rows that need no ``normalize``, a view of
    ``points`` itself (no copy). Never write into a chunk.
    """
    num = points.shape[0] if rows is None else rows.numel()
    view_ok = not normalize and rows is None and \
        points.dtype == torch.float32 and points.is_contiguous()
    buf = None
    for start in range(0, num, chunk_size):
        stop = min(start + chunk_size, num)
        m = stop - start
        if view_ok and m == chunk_size:
            yield m, points[start:stop]
            continue
        if buf is None:
            buf = points.new_zeros((chunk_size, points.shape[1]),
                                   dtype=torch.float32)
        buf[:m] = points[start:stop] if rows is None else \
            points[rows[start:stop]]
        buf[m:] = 0
        if normalize:
            norms = torch.linalg.vector_norm(buf, dim=1, keepdim=True)
            buf.div_(norms.clamp_min_(1e-12))
        yield m, buf


@torch.no_grad()
def normalize_rows_(points: torch.Tensor, rows: int = 256) -> torch.Tensor:
    """L2-normalise the rows of ``points`` in place, a block at a time (no
    N x D temporary), as :func:`padded_chunks` does; returns ``points``."""
    for i in range(0, len(points), rows):
        block = points[i:i + rows]
        norms = torch.linalg.vector_norm(block, dim=1, keepdim=True)
        block.div_(norms.clamp_min_(1e-12))
    return points


def unit_rows(points: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    """Whether every row has an L2 norm within ``tol`` of 1 (one pass, a
    block of about 2^20 values at a time)."""
    ok = torch.ones((), dtype=torch.bool, device=points.device)
    rows = max(1, 2**20 // max(1, points.shape[1]))
    for i in range(0, len(points), rows):
        norms = torch.linalg.vector_norm(points[i:i + rows].float(), dim=1)
        ok &= ((norms - 1).abs() <= tol).all()
    return ok


def normalized_rows(points: torch.Tensor, rows: Optional[torch.Tensor],
                    chunk_size: int) -> torch.Tensor:
    """The rows of ``points`` as :func:`padded_chunks` normalises them."""
    return torch.cat([
        chunk[:m].clone()
        for m, chunk in padded_chunks(points, rows, chunk_size)
    ] + [points.new_zeros((0, points.shape[1]), dtype=torch.float32)])


@contextlib.contextmanager
def _tf32(enabled: bool):
    matmul = torch.backends.cuda.matmul
    if not enabled:
        yield
        return
    old = matmul.fp32_precision
    matmul.fp32_precision = 'tf32'
    try:
        yield
    finally:
        matmul.fp32_precision = old


class NearestCentroid:
    """Squared distance and index of the nearest centroid of a chunk.

    A GEMM in ``precision`` ('tf32' and 'bf16' on CUDA only), the distance
    then recomputed exactly to the chosen centroid; faiss' exhaustive L2
    search only when ``use_faiss`` asks for it (CPU, float32): on 4096
    points at one thread it was 1.2-5.8x slower than the GEMM from K = 100
    to 30000 and D = 128 to 2048 (``benchmarks/kmeans_speed.py`` prints
    both rates).
    """

    def __init__(self,
                 centroids: torch.Tensor,
                 precision: str = 'fp32',
                 use_faiss: bool = False):
        self.centroids = centroids
        self.precision = precision
        self.index = None
        if use_faiss:
            import faiss
            self.index = faiss.IndexFlatL2(centroids.shape[1])
            self.index.add(centroids.numpy())
            return
        self.sq_norms = centroids.square().sum(1)
        if precision == 'bf16':
            self.low = centroids.bfloat16()

    def __call__(self,
                 chunk: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.index is not None:
            dist, labels = self.index.search(chunk.numpy(), 1)
            return torch.from_numpy(dist[:, 0]), torch.from_numpy(labels[:, 0])
        if self.precision == 'bf16':
            dots = torch.mm(
                chunk.bfloat16(), self.low.t(), out_dtype=torch.float32)
            scores = self.sq_norms - 2 * dots  # chunk x K
        else:
            with _tf32(self.precision == 'tf32'):
                scores = torch.addmm(
                    self.sq_norms, chunk, self.centroids.t(), alpha=-2)
        labels = scores.argmin(1)
        dist = (chunk - self.centroids[labels]).square_().sum(1)
        return dist, labels


def _all_reduce(tensor: torch.Tensor, distributed: bool) -> torch.Tensor:
    """Sum over ranks; mmengine moves it to ``get_comm_device()`` and
    back."""
    if distributed:
        dist.all_reduce(tensor)
    return tensor


def _split_empty_clusters(centroids: torch.Tensor, counts: torch.Tensor,
                          generator: torch.Generator) -> int:
    """faiss' ``split_clusters``: each empty cluster takes a copy of a
    cluster drawn with probability ~ (size - 1), and the two are pushed apart
    by a symmetric relative perturbation of +-1/1024; the two halves of a
    split may be drawn again. The draws use the all-reduced counts and a
    generator seeded alike, so every rank splits alike.

    The empty clusters are taken in order, as faiss does, but each draw
    costs O(log K) (a Fenwick tree of the weights, in Python floats) and
    the centroids change in one gather at the end: a changed cluster is a
    copy of its root (an original cluster) times ``(1 + eps sign)^p
    (1 - eps sign)^q``. O(E log K + M D) for E empty and M changed
    clusters, so that collapsed features (29k empty clusters of 30k) cost
    well under a second per Lloyd step, not E draws of O(K) each.
    """
    counts = counts.double().cpu()
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if not empty:
        return 0
    sizes = counts.tolist()
    k = len(sizes)
    weights = [max(size - 1.0, 0.0) for size in sizes]
    tree = [0.0] + weights  # Fenwick tree, 1-based
    for i in range(1, k + 1):
        parent = i + (i & -i)
        if parent <= k:
            tree[parent] += tree[i]
    top = 1 << (k.bit_length() - 1)

    def add(i, delta):
        i += 1
        while i <= k:
            tree[i] += delta
            i += i & -i

    total = sum(weights)
    draws = torch.rand(
        len(empty), generator=generator, dtype=torch.float64).tolist()
    root, plus, minus = {}, {}, {}  # of the clusters that change
    nsplit = 0
    for ci, u in zip(empty, draws):
        # first cluster whose cumulative weight exceeds u * total
        target, cj, step = u * total, 0, top
        while step:
            if cj + step <= k and tree[cj + step] <= target:
                cj += step
                target -= tree[cj]
            step >>= 1
        if cj >= k or weights[cj] <= 0:  # rounding at a boundary
            positive = [c for c in range(k) if weights[c] > 0]
            if not positive:  # no cluster of two or more points is left
                break
            cj = min(positive, key=lambda c, cj=cj: abs(c - cj))
        nsplit += 1
        root[ci] = root.setdefault(cj, cj)
        plus[ci] = plus.setdefault(cj, 0) + 1
        minus[ci] = minus.get(cj, 0)
        minus[cj] = minus[ci] + 1
        sizes[ci] = sizes[cj] / 2
        sizes[cj] -= sizes[ci]
        for c in (ci, cj):
            weight = max(sizes[c] - 1.0, 0.0)
            add(c, weight - weights[c])
            total += weight - weights[c]
            weights[c] = weight
    if not nsplit:
        return 0
    changed = list(root)
    device = centroids.device
    src = torch.tensor([root[c] for c in changed], device=device)
    up, down = 1 + _SPLIT_EPS, 1 - _SPLIT_EPS
    p = torch.tensor([plus[c] for c in changed], dtype=torch.float64)
    q = torch.tensor([minus[c] for c in changed], dtype=torch.float64)
    moved = centroids[src]  # M x D, a copy of the roots
    factors = torch.stack([up**p * down**q, down**p * up**q], 1).to(moved)
    half = moved.shape[1] // 2
    # even / odd coordinates as the M x half x 2 view: no M x D factors
    moved[:, :2 * half].unflatten(1, (half, 2)).mul_(factors[:, None])
    if moved.shape[1] % 2:
        moved[:, -1] *= factors[:, 0]
    centroids.index_copy_(0, torch.tensor(changed, device=device), moved)
    return nsplit


def _initial_centroids(points, local_row, train_ids, num_train, k, init,
                       generator, redo, seed, chunk_size, distributed):
    """K distinct training points: every rank draws the same global ids,
    the rank holding each contributes its row, a sum assembles them."""
    if init == 'kmeans++':  # single process: the training set is local
        from .hierarchical_kmeans import kmeans_plusplus
        rows = None if train_ids is None else local_row[train_ids].to(
            points.device)
        train = normalized_rows(points, rows, chunk_size).cpu().numpy()
        return torch.from_numpy(kmeans_plusplus(train, k, seed * 1000 +
                                                redo)).to(points.device)
    pick = torch.randperm(num_train, generator=generator)[:k]
    ids = pick if train_ids is None else train_ids[pick]
    rows = local_row[ids]
    held = torch.nonzero(rows >= 0).flatten()
    centroids = points.new_zeros((k, points.shape[1]), dtype=torch.float32)
    centroids[held.to(points.device)] = normalized_rows(
        points, rows[held].to(points.device), chunk_size)
    return _all_reduce(centroids, distributed)  # x + 0 is exact


def _add_fixed_point(sums,
                     acc,
                     scaled,
                     pending,
                     points,
                     labels,
                     scale=_SUM_SCALE):
    """CPU: add ``points`` to ``sums[labels]`` in fixed point, a cached
    block of rows at a time. The integers (|v| < 2^32) are summed in float64
    (its index_add is 6x int64's here), exactly: after at most 2^20 rows
    every partial sum is an integer below 2^53; ``acc`` is then moved to
    the int64 ``sums``. ``scale=-_SUM_SCALE`` subtracts exactly what was
    added (rounding to nearest is symmetric). Returns the rows pending in
    ``acc``."""
    for i in range(0, len(points), len(scaled)):
        j = min(len(points), i + len(scaled))
        if pending + j - i > _EXACT_ROWS:
            sums += acc.long()
            acc.zero_()
            pending = 0
        block = torch.mul(points[i:j], scale, out=scaled[:j - i])
        # to the nearest integer (|v| < 2^51): faster than trunc_ here
        acc.index_add_(0, labels[i:j], block.add_(_ROUND).sub_(_ROUND))
        pending += j - i
    return pending


class _FixedPointSums:
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

    def _add(self, points, labels, scale=_SUM_SCALE):
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
            self._add(moving, old[moved], -_SUM_SCALE)

    def finish(self, labels: torch.Tensor) -> torch.Tensor:
        """End of a step whose rows got ``labels``: the sums."""
        if not self.gpu:
            self.sums += self.acc.long()
            self.acc.zero_()
            self.pending = 0
        self.previous = labels
        return self.sums


def _fixed_point(new: torch.Tensor, old: torch.Tensor, nsplit: int) -> bool:
    """Whether a Lloyd step reached a fixed point: the means of its
    assignment are the centroids it was made with (bitwise; the sums are
    exact), so every later iteration would repeat it. Stopping there changes
    no result, and every rank decides alike (all-reduced centroids)."""
    return nsplit == 0 and torch.equal(new, old)


def _lloyd_step(points,
                rows,
                centroids,
                chunk_size,
                precision,
                normalize,
                distributed,
                fixed: Optional[_FixedPointSums] = None):
    """Assign the (training) rows, then all-reduce the fixed-point sums,
    the counts and the objective in one collective. ``fixed``: the sums of
    the previous step of this restart (updated in place); None: from
    scratch."""
    k, dim = centroids.shape
    nearest = NearestCentroid(centroids, precision)
    if fixed is None:
        fixed = _FixedPointSums(k, dim, points.device)
    all_labels, all_dists = [], []
    start = 0
    for m, chunk in padded_chunks(points, rows, chunk_size, normalize):
        dist_, labels = nearest(chunk)
        labels = labels[:m].to(points.device)
        fixed.assign(chunk[:m], labels, start)
        start += m
        all_labels.append(labels)
        all_dists.append(dist_[:m].to(points.device))
    labels = torch.cat(all_labels + [centroids.new_zeros(0).long()])
    dists = torch.cat(all_dists + [centroids.new_zeros(0)])
    # [sums | counts | objective], reduced in one go
    packed = torch.cat([
        fixed.finish(labels).flatten(),
        torch.bincount(labels, minlength=k),
        dists.mul(_OBJ_SCALE).long().sum().view(1)
    ])
    _all_reduce(packed, distributed)
    counts = packed[k * dim:-1]
    new = packed[:k * dim].view(k, dim).double().div_(_SUM_SCALE).div_(
        counts.clamp_min(1)[:, None]).float()
    return new, counts, float(packed[-1]) / _OBJ_SCALE


def _weight_scale(weights: torch.Tensor) -> float:
    """The power of two ``s`` of :func:`_weighted_step`'s sums:
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


def _weighted_step(points, rows, weights, centroids, chunk_size, precision,
                   normalize, scale):
    """A Lloyd step of one process whose points carry weights (n, ):
    weighted sums and counts, weighted objective, as integers (``scale``,
    :func:`_weight_scale`) summed exactly in float64: deterministic on a
    GPU too, where float64 ``index_add_`` of arbitrary values is not."""
    k, dim = centroids.shape
    nearest = NearestCentroid(centroids, precision)
    sums = points.new_zeros((k, dim), dtype=torch.float64)
    counts = points.new_zeros(k, dtype=torch.float64)
    obj = points.new_zeros((), dtype=torch.float64)
    start = 0
    for m, chunk in padded_chunks(points, rows, chunk_size, normalize):
        dist_, labels = nearest(chunk)
        labels = labels[:m].to(points.device)
        idx = slice(start, start + m) if rows is None else \
            rows[start:start + m]
        w = weights[idx].to(points.device, torch.float64) * scale
        terms = chunk[:m].double().mul_(w[:, None])  # m x D
        sums.index_add_(0, labels, terms.round_())
        counts.index_add_(0, labels, w.round())
        obj += (dist_[:m].to(w) * (w / 4)).round_().sum()
        start += m
    new = sums.div_(counts.clamp_min(1)[:, None]).float()
    return new, counts.div_(scale), float(obj) * 4 / scale


def lloyd_kmeans(points: torch.Tensor,
                 ids: torch.Tensor,
                 num_points: int,
                 k: int,
                 *,
                 niter: int,
                 nredo: int,
                 max_points_per_centroid: int,
                 seed: int,
                 init: str,
                 chunk_size: int,
                 precision: str,
                 distributed: bool,
                 weights: Optional[torch.Tensor] = None,
                 log=None) -> LevelResult:
    """k-means of the points of all ranks into ``k`` clusters.

    A collective when ``distributed``: every rank passes its rows
    ``points`` (n, D) with their global ``ids`` (n, ) in [0, num_points)
    (CPU int64); the ids of all ranks together cover [0, num_points) once.
    ``weights`` (n, ), one process only: each point counts that many times
    in the centroids and the objective (faiss' ``train(x, weights)``),
    summed exactly in fixed point (:func:`_weight_scale`), so the result
    does not depend on the device's summation order.

    Returns:
        LevelResult: the best restart's centroids (the same on every rank)
        and the labels and squared distances of the local rows.
    """
    # (torch's thread count is left alone: on one thread, faiss' GEMM ran
    # at half speed here; torch's own steps are now light)
    return _lloyd_kmeans(points, ids, num_points, k, niter, nredo,
                         max_points_per_centroid, seed, init, chunk_size,
                         precision, distributed, weights, log)


def _lloyd_kmeans(points, ids, num_points, k, niter, nredo,
                  max_points_per_centroid, seed, init, chunk_size, precision,
                  distributed, weights, log):
    if weights is not None and distributed:
        raise ValueError('weights are for one process (the upper levels).')
    device = points.device
    local_row = torch.full((num_points, ), -1, dtype=torch.int64)
    local_row[ids] = torch.arange(len(ids))

    train_ids, rows = None, None
    num_train = num_points
    if num_points > k * max_points_per_centroid:
        num_train = k * max_points_per_centroid
        train_ids = torch.randperm(
            num_points, generator=torch.Generator().manual_seed(seed))
        train_ids = train_ids[:num_train]
        rows = local_row[train_ids]
        rows = rows[rows >= 0].sort().values.to(device)

    # rows already L2-normalised (the hook's shards) are used in place
    normalize = torch.logical_not(unit_rows(points)).int().view(1)
    normalize = bool(_all_reduce(normalize, distributed))
    best, best_obj, iterations = None, float('inf'), 0
    scale = None if weights is None else _weight_scale(weights)
    for redo in range(nredo if num_train > k else 1):
        generator = torch.Generator().manual_seed(seed + 1 + redo * 15486557)
        centroids = _initial_centroids(points, local_row, train_ids, num_train,
                                       k, init, generator, redo, seed,
                                       chunk_size, distributed)
        if num_train == k:  # faiss: the points are the centroids
            best = centroids
            break
        fixed = _FixedPointSums(k, points.shape[1], device)
        for it in range(niter):
            if weights is None:
                new, counts, obj = _lloyd_step(points, rows, centroids,
                                               chunk_size, precision,
                                               normalize, distributed, fixed)
            else:
                new, counts, obj = _weighted_step(points, rows, weights,
                                                  centroids, chunk_size,
                                                  precision, normalize, scale)
            nsplit = _split_empty_clusters(new, counts, generator)
            converged = _fixed_point(new, centroids, nsplit)
            centroids = new
            iterations += 1
            if log is not None:
                log(f'redo {redo} iteration {it}: objective {obj:.6g}, '
                    f'{nsplit} empty clusters split' +
                    (', converged' if converged else ''))
            if converged:
                break
        if obj < best_obj:
            best, best_obj = centroids, obj

    labels, dists = [], []
    nearest = NearestCentroid(best, precision)
    for m, chunk in padded_chunks(points, None, chunk_size, normalize):
        dist_, label = nearest(chunk)
        dists.append(dist_[:m].to(device))
        labels.append(label[:m].to(device))
    labels = torch.cat(labels + [ids.new_zeros(0).to(device)])
    dists = torch.cat(dists + [best.new_zeros(0)])
    totals = torch.cat([
        torch.bincount(labels, minlength=k),
        (dists * _OBJ_SCALE).long().sum().view(1)
    ])
    totals = _all_reduce(totals, distributed)
    return LevelResult(best, labels, dists,
                       float(totals[-1]) / _OBJ_SCALE,
                       int((totals[:-1] > 0).sum()), iterations)
