"""The ranks' shards of the points: checked alike on every rank, gathered
in id order."""
from typing import List, NamedTuple, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather


class Shards(NamedTuple):
    """Where the N points lie across the ranks."""
    ids: torch.Tensor  # n, global ids of the local rows, CPU int64
    all_ids: torch.Tensor  # N, the ids of all ranks in rank order
    num_samples: int  # N
    counts: List[int]  # rows of each rank

    @property
    def world_size(self) -> int:
        return len(self.counts)


def _all_finite(features: torch.Tensor) -> bool:
    """No NaN or Inf, checked about 2^20 values at a time: a sum with
    ``dtype=float64`` would cast a float64 copy of all the features, a
    whole-tensor ``isfinite`` holds N D temporaries."""
    if features.ndim != 2 or not features.numel():
        return bool(torch.isfinite(features).all())
    finite = torch.ones((), dtype=torch.bool, device=features.device)
    rows = max(1, 2**20 // features.shape[1])
    for i in range(0, len(features), rows):  # one sync at the end
        finite &= torch.isfinite(features[i:i + rows]).all()
    return bool(finite)


def all_gather_rows(tensor: torch.Tensor, counts: List[int],
                    world_size: int) -> torch.Tensor:
    """Rows of all ranks in rank order; shards may be uneven or empty."""
    if world_size == 1:
        return tensor
    padded = tensor.new_zeros((max(counts), ) + tensor.shape[1:])
    padded[:len(tensor)] = tensor
    return torch.cat([part[:n] for part, n in zip(all_gather(padded), counts)])


def check_shards(features, sample_idx, num_samples, world_size) -> Shards:
    """Check the shards of all ranks alike (a rank alone raising would
    leave the others waiting in a collective) and say where they lie.

    Args:
        features (torch.Tensor): This rank's points, (n, D).
        sample_idx (Tensor | np.ndarray, optional): Global id of each row;
            None: ``arange(n)``, one rank only.
        num_samples (int, optional): N; None: the total of the shards.
        world_size (int): Ranks holding shards.

    Returns:
        Shards: the local and all ids, N and every rank's number of rows.
    """
    if sample_idx is None:
        if world_size > 1:
            raise ValueError(
                f'sample_idx is required with {world_size} ranks: the '
                'global id in [0, num_samples) of each row of features.')
        sample_idx = torch.arange(len(features))
    sample_idx = torch.as_tensor(sample_idx).cpu()
    ok_ids = sample_idx.ndim == 1 and not sample_idx.is_floating_point() \
        and len(sample_idx) == (len(features) if features.ndim else 0)
    info = torch.tensor([
        features.ndim, features.shape[0] if features.ndim else 0,
        features.shape[-1] if features.ndim == 2 else -1,
        int(_all_finite(features)),
        int(ok_ids),
        sample_idx.numel(),
        int(sample_idx.min()) if ok_ids and sample_idx.numel() else 0,
        int(sample_idx.max()) if ok_ids and sample_idx.numel() else -1
    ])
    infos = torch.stack(all_gather(info)) if world_size > 1 else info[None]
    for r, (ndim, n, dim, finite, ok, num_ids, _,
            _) in enumerate(infos.tolist()):
        where = f' on rank {r}' if world_size > 1 else ''
        if ndim != 2:
            raise ValueError(f'features must be a 2-D (num_points, dim) '
                             f'array, got {ndim} dimension(s){where}.')
        if dim != infos[0, 2]:
            raise ValueError(f'features have {dim} dimensions{where} but '
                             f'{int(infos[0, 2])} on rank 0.')
        if not finite:
            raise ValueError(f'features contain NaN or Inf{where}.')
        if not ok:
            raise ValueError(
                f'sample_idx must be a 1-D integer array of one global id '
                f'per row of features, got {num_ids} ids for {n} '
                f'rows{where}.')
    counts = infos[:, 1].tolist()
    total = sum(counts)
    num_samples = total if num_samples is None else int(num_samples)
    if total != num_samples:
        raise ValueError(
            f'The ranks hold {total} rows of features but num_samples is '
            f'{num_samples}: every id in [0, num_samples) must be held '
            'once.')
    lo, hi = int(infos[:, 6].min()), int(infos[:, 7].max())
    if lo < 0 or hi >= num_samples:
        raise ValueError(f'sample_idx must lie in [0, {num_samples}), got '
                         f'ids from {lo} to {hi}.')
    all_ids = all_gather_rows(sample_idx.long(), counts, world_size)
    times = torch.bincount(all_ids, minlength=num_samples)
    if int(times.max()) > 1:
        dup = int(times.argmax())
        raise ValueError(
            f'sample_idx holds id {dup} {int(times[dup])} times (across '
            'ranks): every id in [0, num_samples) must be held once.')
    return Shards(sample_idx.long(), all_ids, num_samples, counts)


def gather_in_id_order(labels: torch.Tensor, distances: torch.Tensor,
                       shards: Shards) -> Tuple[np.ndarray, np.ndarray]:
    """The labels (int64) and distances (float32) of all N points in id
    order, on every rank, from those of the local rows."""
    # one all-gather of 8-byte pairs: the int32 label and the float32
    # distance's bits (both exact)
    pairs = all_gather_rows(
        torch.stack(
            [labels.int(),
             distances.float().contiguous().view(torch.int32)], 1).cpu(),
        shards.counts, shards.world_size)
    order = shards.all_ids.numpy()
    assignments = np.empty(shards.num_samples, dtype=np.int64)
    assignments[order] = pairs[:, 0].numpy()
    dist = np.empty(shards.num_samples, dtype=np.float32)
    dist[order] = pairs[:, 1].numpy().view(np.float32)
    return assignments, dist
