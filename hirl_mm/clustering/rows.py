"""The rows of points as every k-means step reads them.

Rows are L2-normalised on the way, in chunks of one fixed shape (the last
one padded with zeros), so every GEMM a point goes through has the same
shape whatever its position in the shard: W ranks assign their points
bitwise as one process does.
"""
from typing import Iterator, Optional, Tuple

import torch
from mmengine import dist


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


def sum_over_ranks(tensor: torch.Tensor, distributed: bool) -> torch.Tensor:
    """All-reduce ``tensor`` in place when ``distributed``; mmengine moves
    it to ``get_comm_device()`` and back."""
    if distributed:
        dist.all_reduce(tensor)
    return tensor
