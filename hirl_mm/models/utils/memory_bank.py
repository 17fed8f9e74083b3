"""Per-rank memory of the training pass's features (DeepCluster-v2)."""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.dist import (all_gather, all_reduce, gather, get_comm_device,
                           get_rank, get_world_size)

# Rows per rank per collective of gather_state: its destination's device
# holds world_size such chunks at a time, not the N x D matrix.
GATHER_CHUNK_BYTES = 32 * 2**20


class PrototypeMemoryBank:
    """The L2-normalised features of the images this rank trained on.

    As DeepCluster-v2's memory bank (facebookresearch/swav,
    ``main_deepclusterv2.py``, ``init_memory`` and the ``local_memory_*``
    updates of ``train``), but sized to what the rank actually trains on:
    rows are appended the first time an image id is seen and overwritten
    after, so a rank holds about N / world_size rows (ceil(N / world_size)
    preallocated, grown by doubling if a sampler gives more) and never two
    rows of one image, even when the sampler pads its shard with repeats
    (``DefaultSampler(round_up=True)``). A lookup of N ints
    maps an id to its row. The rows stay float32 whatever the training
    precision: a clustering from a resumed bank is then exact.

    Not a module, so not in the model's state dict: the prototype hook
    puts the rows in a checkpoint through :meth:`gather_state` (every
    rank's rows, to rank 0, which writes the checkpoint) and gives each
    rank its own back through :meth:`load_state`.

    Args:
        num_samples (int): Images in the training set, N.
    """

    def __init__(self, num_samples: int) -> None:
        if num_samples <= 0:
            raise ValueError(
                f'num_samples must be positive, got {num_samples}.')
        self.num_samples = num_samples
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
        """Store (B, D) features of the training images ``sample_idx`` (B, ),
        the latest one per image."""
        if feats.dim() != 2 or sample_idx.shape != (len(feats), ):
            raise ValueError(
                'record needs features (B, D) and sample ids (B, ), got '
                f'{tuple(feats.shape)} and {tuple(sample_idx.shape)}.')
        if not len(feats):
            return
        device = feats.device
        sample_idx = sample_idx.to(device=device, dtype=torch.long)
        low, high = int(sample_idx.min()), int(sample_idx.max())
        if low < 0 or high >= self.num_samples:
            raise IndexError(
                f'sample_idx {low if low < 0 else high} is out of range for '
                f'a memory bank of {self.num_samples} images.')
        feats = F.normalize(feats.detach().float(), dim=1)
        if self.feats is None:
            self.row_of = torch.full((self.num_samples, ),
                                     -1,
                                     dtype=torch.long,
                                     device=device)
            # a DefaultSampler gives a rank ceil(N / world) images: no
            # growth (hence no transient copy) in the usual case
            self._resize(
                max(len(feats), -(-self.num_samples // get_world_size())),
                feats)
        elif feats.shape[1] != self.feats.shape[1] or \
                device != self.feats.device:
            raise ValueError(
                f'The memory bank holds {self.feats.shape[1]}-d features on '
                f'{self.feats.device}, got {feats.shape[1]}-d on {device}.')
        # one row per image: the batch's last occurrence of an id wins
        ids, inverse = torch.unique(sample_idx, return_inverse=True)
        last = ids.new_full(
            (len(ids), ),
            -1).scatter_reduce_(0, inverse,
                                torch.arange(len(inverse), device=device),
                                'amax')
        feats = feats[last]
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
        """This rank's rows after removing the images a lower rank holds.

        A collective: one all-reduce (MIN) of N ints on the communication
        device names each image's owner, the lowest rank that holds it.

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
