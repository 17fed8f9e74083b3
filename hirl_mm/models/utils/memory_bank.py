"""Per-rank memory of the training pass's features (DeepCluster-v2, NPID)."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.dist import (all_gather, all_reduce, gather, get_comm_device,
                           get_rank, get_world_size)

# Rows per rank per collective of gather_state: its destination's device
# holds world_size such chunks at a time, not the N x D matrix.
GATHER_CHUNK_BYTES = 32 * 2**20
RECORDED_VIEWS = ('first', 'all')


def sample_indices(data_samples: Sequence,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """The ``sample_idx`` of each data sample, the ids the bank keys on.

    Args:
        data_samples (Sequence[DataSample]): The batch's data samples.
        device (torch.device, optional): Where the ids go. Defaults to None.

    Returns:
        torch.Tensor: ``(B, )`` ids.
    """
    return torch.as_tensor([ds.sample_idx for ds in data_samples],
                           device=device)


class PrototypeMemoryBank:
    """The L2-normalised features of the training images, one row per image.

    As DeepCluster-v2's memory bank (facebookresearch/swav,
    ``main_deepclusterv2.py``, ``init_memory`` and the ``local_memory_*``
    updates of ``train``), with NPID's momentum rows (Wu et al. 2018, as
    MMSelfSup's ``SimpleMemory``): each :meth:`record` averages the step's
    unit rows of an image (the views of a step, or a sampler's padding
    repeats) and moves the image's row toward that mean,
    ``v <- normalize(momentum * v + (1 - momentum) * f)``; an image's first
    row is ``f``. With ``momentum`` 0 a row is the latest step's.

    Where a row lives: with ``momentum`` 0 on the rank that trained on the
    image (an epoch's rows, about N / world_size per rank; ceil(N /
    world_size) preallocated, grown by doubling if a sampler gives more).
    With ``momentum > 0`` a row averages an image's views over the epochs,
    whichever rank trained on it, so image ``i`` lives on rank
    ``i % world_size``: under several ranks :meth:`record` all-gathers the
    step's rows (``world_size x rows x (D + 2)`` float32 received per
    rank, on the communication device) and each rank keeps those it owns,
    at most ceil(N / world_size) rows (preallocated): 1.28M x 2048 float32
    on 8 ranks is 1.31 GB per rank. A lookup of N ints maps an id to its
    row. The rows stay float32 whatever the training precision: a
    clustering from a resumed bank is then exact.

    Not a module, so not in the model's state dict: the prototype hook
    puts the rows in a checkpoint through :meth:`gather_state` (every
    rank's rows, to rank 0, which writes the checkpoint) and gives each
    rank its own back through :meth:`load_state`.

    Args:
        num_samples (int): Images in the training set, N.
        momentum (float): Weight of a row's past in an update, in [0, 1).
            Defaults to 0.
        views (str): What the model records of a step: ``'first'``, the
            rows of one view of every image, or ``'all'``, every view it
            projects in the prototypes' space. Defaults to ``'first'``.
    """

    def __init__(self,
                 num_samples: int,
                 momentum: float = 0.,
                 views: str = 'first') -> None:
        if num_samples <= 0:
            raise ValueError(
                f'num_samples must be positive, got {num_samples}.')
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}.')
        if views not in RECORDED_VIEWS:
            raise ValueError(
                f'views must be one of {RECORDED_VIEWS}, got {views!r}.')
        self.num_samples = num_samples
        self.momentum = float(momentum)
        self.views = views
        self.recording = False
        self.size = 0
        self.feats: Optional[torch.Tensor] = None  # capacity x D
        self.ids: Optional[torch.Tensor] = None  # capacity
        self.row_of: Optional[torch.Tensor] = None  # N, -1: not held

    def __len__(self) -> int:
        return self.size

    def reset(self) -> None:
        """Forget the rows (the storage is kept for the next epoch)."""
        if self.size:
            self.row_of[self.ids[:self.size]] = -1
        self.size = 0

    @torch.no_grad()
    def record(self, feats: torch.Tensor, sample_idx: torch.Tensor) -> None:
        """Update the rows of the training images ``sample_idx`` (B, ) with
        their features (B, D); an id may repeat (e.g. one row per view).

        With ``momentum > 0`` under several ranks a collective: every
        rank calls it in every step that records, with its own batch
        (which may be empty).
        """
        if feats.dim() != 2 or sample_idx.shape != (len(feats), ):
            raise ValueError(
                'record needs features (B, D) and sample ids (B, ), got '
                f'{tuple(feats.shape)} and {tuple(sample_idx.shape)}.')
        sample_idx = sample_idx.to(device=feats.device, dtype=torch.long)
        error = None
        if len(sample_idx):
            low, high = int(sample_idx.min()), int(sample_idx.max())
            if low < 0 or high >= self.num_samples:
                error = (f'sample_idx {low if low < 0 else high} is out of '
                         f'range for a memory bank of {self.num_samples} '
                         'images.')
        feats = F.normalize(feats.detach().float(), dim=1)
        if self.momentum and get_world_size() > 1:
            feats, sample_idx = self._owned(feats, sample_idx, error)
        elif error:
            raise IndexError(error)
        self.record_owned(feats, sample_idx)

    def _owned(self, feats: torch.Tensor, sample_idx: torch.Tensor,
               error: Optional[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Every rank's rows of the images this rank owns (collectives);
        an ``error`` of any rank raises on every rank."""
        rank, world = get_rank(), get_world_size()
        comm, device = get_comm_device(), feats.device
        # the ids ride in the same message, their int64 bits as 2 floats
        rows = torch.cat([sample_idx[:, None].view(torch.float32), feats], 1)
        # the last batches may differ in rows, never in width: every rank
        # gets the largest batch, the largest and the smallest width, and
        # whether a rank's ids are out of range
        head = torch.tensor(
            [len(rows), rows.shape[1], -rows.shape[1],
             int(error is not None)],
            device=comm)
        all_reduce(head, op='max')
        num, dim, low, failed = (int(n) for n in head)
        if failed:
            raise IndexError(error or 'A sample_idx is out of range for a '
                             f'memory bank of {self.num_samples} images on '
                             'another rank.')
        if dim != -low:
            raise ValueError(
                f'The memory bank is recording features of {-low - 2} to '
                f'{dim - 2} dimensions on different ranks ({rows.shape[1] - 2}'
                f' on rank {rank}).')
        padded = torch.zeros(num, dim, device=comm)
        padded[:len(rows), :rows.shape[1]] = rows.to(comm)
        padded[len(rows):, :2] = torch.tensor([-1], dtype=torch.long).view(
            torch.float32).to(comm)
        rows = torch.cat(all_gather(padded)).to(device)  # world * num x dim
        ids = rows[:, :2].contiguous().view(torch.long).flatten()
        mine = (ids >= 0) & (ids % world == rank)
        return rows[mine, 2:], ids[mine]

    @torch.no_grad()
    def record_owned(self, feats: torch.Tensor,
                     sample_idx: torch.Tensor) -> None:
        """:meth:`record` on this rank alone (no collective): unit rows
        (B, D) of images ``sample_idx`` (B, ) this rank owns."""
        if not len(feats):
            return
        device = feats.device
        if self.feats is None:
            self.row_of = torch.full((self.num_samples, ),
                                     -1,
                                     dtype=torch.long,
                                     device=device)
            # a DefaultSampler gives a rank ceil(N / world) images, and a
            # rank owns at most as many: no growth (no transient copy)
            self._resize(
                max(len(feats), -(-self.num_samples // get_world_size())),
                feats)
        elif feats.shape[1] != self.feats.shape[1] or \
                device != self.feats.device:
            raise ValueError(
                f'The memory bank holds {self.feats.shape[1]}-d features on '
                f'{self.feats.device}, got {feats.shape[1]}-d on {device}.')
        # one row per image: the direction of the mean of its unit rows
        ids, inverse = torch.unique(sample_idx, return_inverse=True)
        feats = F.normalize(
            feats.new_zeros(len(ids),
                            feats.shape[1]).index_add_(0, inverse, feats),
            dim=1)
        rows = self.row_of[ids]
        new = rows < 0
        num_new = int(new.sum())
        if self.size + num_new > len(self.feats):
            self._resize(
                min(self.num_samples,
                    max(2 * len(self.feats), self.size + num_new)), feats)
        rows[new] = torch.arange(self.size, self.size + num_new, device=device)
        self.row_of[ids[new]] = rows[new]
        self.ids[rows[new]] = ids[new]
        if self.momentum:
            old = rows[~new]
            feats[~new] = F.normalize(
                self.momentum * self.feats[old] +
                (1 - self.momentum) * feats[~new],
                dim=1)
        self.feats[rows] = feats
        self.size += num_new

    def _resize(self, capacity: int, like: torch.Tensor) -> None:
        feats = like.new_empty(capacity, like.shape[1])
        ids = torch.empty(capacity, dtype=torch.long, device=like.device)
        if self.feats is not None:
            feats[:self.size] = self.feats[:self.size]
            ids[:self.size] = self.ids[:self.size]
        self.feats, self.ids = feats, ids

    def rows(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Views of the held features (S, D) and their ``sample_idx``."""
        return self.feats[:self.size], self.ids[:self.size]

    def shard(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's rows, every image on one rank, and the images no rank
        holds.

        A collective: one all-reduce (MIN) of N ints on the communication
        device names each image's owner, the lowest rank that holds it
        (the only one, unless rows were loaded or recorded outside
        :meth:`record`).

        Returns:
            tuple: ``feats`` (S, D) and their ``sample_idx`` (S, ), views
            of the bank's rows on its device, which drops the other ranks'
            images in place (``feats`` is None before any record: its width
            is unknown), and the ``missing`` ids (M, ) no rank holds,
            sorted, on the communication device, the same on every rank.
        """
        rank, world = get_rank(), get_world_size()
        comm = get_comm_device()
        ids = self.ids[:self.size] if self.size else \
            torch.zeros(0, dtype=torch.long)
        owner = torch.full((self.num_samples, ),
                           world,
                           dtype=torch.long,
                           device=comm)
        owner[ids.to(comm)] = rank
        all_reduce(owner, op='min')
        missing = torch.nonzero(owner == world).flatten()
        if not self.size:
            return None, ids, missing
        self._drop((owner[ids.to(comm)] != rank).to(ids.device))
        return self.feats[:self.size], self.ids[:self.size], missing

    def _drop(self, drop: torch.Tensor) -> None:
        """Remove the rows flagged in ``drop`` (S, ) in place: the kept rows
        past the new end fill the holes (a copy of a few rows, not of the
        bank)."""
        size = self.size - int(drop.sum())
        if size == self.size:
            return
        pos = torch.arange(self.size, device=drop.device)
        holes = pos[:size][drop[:size]]
        movers = pos[size:][~drop[size:]]
        self.row_of[self.ids[:self.size][drop]] = -1
        self.feats[holes] = self.feats[movers]
        self.ids[holes] = self.ids[movers]
        self.row_of[self.ids[holes]] = holes
        self.size = size

    @torch.no_grad()
    def gather_state(self, dst: int = 0) -> Optional[dict]:
        """Every rank's rows, gathered to rank ``dst`` for a checkpoint.

        A collective: every rank calls it. The rows travel through the
        communication device (where they already live under NCCL) in chunks
        of :data:`GATHER_CHUNK_BYTES` per rank, and ``dst`` copies each
        chunk to the CPU as it arrives: its device holds ``world_size``
        chunks at a time, its memory the S x D float32 rows, S about N
        (655 MB for 1.28M x 128).

        Args:
            dst (int): The rank that receives the rows. Defaults to 0.

        Returns:
            dict, optional: On ``dst``, ``num_samples`` (N), ``rows_per_rank``
            (W, ) and the rows on the CPU, rank 0's first, each rank's in its
            order: ``sample_idx`` (S, ) and ``feats`` (S, D) float32. None
            on the other ranks, and on every rank when no rank holds a row.
        """
        rank, world = get_rank(), get_world_size()
        comm = get_comm_device()
        dim = 0 if self.feats is None else self.feats.shape[1]
        head = torch.stack(
            all_gather(torch.tensor([self.size, dim], device=comm)))  # W x 2
        sizes = [int(n) for n in head[:, 0]]
        dim = int(head[:, 1].max())
        if not sum(sizes):
            return None
        if rank == dst:
            feats = torch.empty(sum(sizes), dim)
            sample_idx = torch.empty(sum(sizes), dtype=torch.long)
            starts = torch.tensor([0] + sizes).cumsum(0).tolist()
        step = max(1, GATHER_CHUNK_BYTES // (4 * dim))
        for begin in range(0, max(sizes), step):
            # every rank sends a full chunk (gather takes equal shapes)
            num = min(step, max(sizes) - begin)
            held = max(0, min(num, self.size - begin))
            part = torch.zeros(num, dim, device=comm)
            part_idx = torch.full((num, ), -1, dtype=torch.long, device=comm)
            if held:
                part[:held] = self.feats[begin:begin + held].to(comm)
                part_idx[:held] = self.ids[begin:begin + held].to(comm)
            parts, part_ids = gather(part, dst), gather(part_idx, dst)
            if rank != dst:
                continue
            for src in range(world):
                count = max(0, min(num, sizes[src] - begin))
                rows = slice(starts[src] + begin, starts[src] + begin + count)
                feats[rows] = parts[src][:count].cpu()
                sample_idx[rows] = part_ids[src][:count].cpu()
        if rank != dst:
            return None
        return dict(
            num_samples=self.num_samples,
            rows_per_rank=torch.tensor(sizes),
            sample_idx=sample_idx,
            feats=feats)

    @torch.no_grad()
    def load_state(self,
                   state: dict,
                   device: Union[str, torch.device, None] = None) -> None:
        """Hold the rows this rank held when ``state`` was gathered
        (:meth:`gather_state`), in the same order, and record nothing until
        ``recording`` is set again.

        Args:
            state (dict): What :meth:`gather_state` returned on its
                destination, from a run with as many ranks as this one.
            device (str | torch.device, optional): Where the rows go, the
                device the model records from. Defaults to the state's.

        Raises:
            ValueError: if ``state`` is of another data set or world size.
        """
        rows_per_rank = [int(n) for n in state['rows_per_rank']]
        world = get_world_size()
        if int(state['num_samples']) != self.num_samples or \
                len(rows_per_rank) != world:
            raise ValueError(
                f'The memory bank state holds {int(state["num_samples"])} '
                f'images on {len(rows_per_rank)} ranks; this bank is of '
                f'{self.num_samples} images on {world} ranks.')
        rank = get_rank()
        start = sum(rows_per_rank[:rank])
        rows = slice(start, start + rows_per_rank[rank])
        feats = state['feats'][rows]
        feats = feats.to(
            device=feats.device if device is None else device,
            dtype=torch.float32)
        self.recording = False
        self.feats = self.ids = self.row_of = None
        self.size = 0
        if not len(feats):  # as before any record: width unknown
            return
        # fresh storage: no view keeps the checkpoint's N x D rows alive
        self._resize(max(len(feats), -(-self.num_samples // world)), feats)
        self.size = len(feats)
        self.feats[:self.size] = feats
        device = feats.device
        self.ids[:self.size] = state['sample_idx'][rows].to(device)
        self.row_of = torch.full((self.num_samples, ),
                                 -1,
                                 dtype=torch.long,
                                 device=device)
        self.row_of[self.ids[:self.size]] = torch.arange(
            self.size, device=device)
