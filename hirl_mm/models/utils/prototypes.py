from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import broadcast, get_rank

from hirl_mm.clustering import HierarchicalClustering


class HierarchicalPrototypes(nn.Module):
    """A tree of prototypes kept as buffers, so checkpoints carry it.

    Buffers (L levels, N training images, M_l clusters at level l):
    ``epoch`` (the epoch they were built for, -1 before the first
    clustering), ``assignments`` (N, ), ``centroids_l`` (M_l, D),
    ``parents_l`` (M_l, ) for l < L - 1 and ``concentrations_l`` (M_l, ).
    Their sizes are only known after the first clustering, so loading a
    state dict resizes them to the stored shapes.

    Args:
        num_clusters (Sequence[int]): Clusters per level, finest first.
    """

    def __init__(self, num_clusters: Sequence[int]) -> None:
        super().__init__()
        self.num_clusters = list(num_clusters)
        self.register_buffer('epoch', torch.tensor(-1, dtype=torch.long))
        self.register_buffer('assignments', torch.zeros(0, dtype=torch.long))
        for lvl in range(self.num_levels):
            self.register_buffer(f'centroids_{lvl}', torch.zeros(0, 0))
            self.register_buffer(f'concentrations_{lvl}', torch.zeros(0))
            if lvl < self.num_levels - 1:
                self.register_buffer(f'parents_{lvl}',
                                     torch.zeros(0, dtype=torch.long))

    @property
    def num_levels(self) -> int:
        return len(self.num_clusters)

    @property
    def ready(self) -> bool:
        return bool(self.epoch >= 0)

    @property
    def cluster_sizes(self) -> List[int]:
        """Clusters per level of the stored tree, which a checkpoint may
        have built with other ``num_clusters``; the configured ones before
        the first clustering."""
        if not self.ready:
            return list(self.num_clusters)
        return [len(cent) for cent in self.centroids]

    @property
    def centroids(self) -> List[torch.Tensor]:
        return [
            getattr(self, f'centroids_{i}') for i in range(self.num_levels)
        ]

    @property
    def parents(self) -> List[torch.Tensor]:
        return [
            getattr(self, f'parents_{i}') for i in range(self.num_levels - 1)
        ]

    @property
    def concentrations(self) -> List[torch.Tensor]:
        return [
            getattr(self, f'concentrations_{i}')
            for i in range(self.num_levels)
        ]

    @torch.no_grad()
    def reset(self) -> None:
        """Forget the tree (epoch -1, empty buffers), e.g. after loading
        a pre-trained checkpoint whose tree belongs to another run."""
        self.epoch.fill_(-1)
        self._allocate(0, 0, *([0] * self.num_levels))

    def expand_paths(self, leaf_ids: torch.Tensor) -> torch.Tensor:
        """Level-0 cluster ids (...) -> root-to-leaf paths (..., L)."""
        ids = [leaf_ids]
        for parent in self.parents:
            ids.append(parent[ids[-1]])
        return torch.stack(ids, dim=-1)

    def paths(self, sample_idx: torch.Tensor) -> torch.Tensor:
        """Cluster ids of the given training images at every level, (B, L)."""
        if not self.ready:
            raise RuntimeError('The prototypes have not been built yet.')
        if int(sample_idx.max()) >= self.assignments.numel():
            raise IndexError(
                f'sample_idx {int(sample_idx.max())} is out of range: the '
                f'prototypes were built for {self.assignments.numel()} '
                'training images. Was the training set changed?')
        return self.expand_paths(self.assignments[sample_idx])

    @torch.no_grad()
    def assign(self, feats: torch.Tensor) -> torch.Tensor:
        """Paths (B, L) of features (B, D): nearest level-0 prototype (cosine)
        and its ancestors through the parent maps."""
        if not self.ready:
            raise RuntimeError('The prototypes have not been built yet.')
        cent = self.centroids_0
        if feats.dim() != 2 or feats.shape[1] != cent.shape[1]:
            raise ValueError(
                f'Cannot assign features of shape {tuple(feats.shape)} to '
                f'level-0 prototypes of dimension {cent.shape[1]}: use the '
                'features the prototypes were built from.')
        leaves = (F.normalize(feats.float(), dim=1) @ cent.t()).argmax(1)
        return self.expand_paths(leaves)

    @torch.no_grad()
    def update(self,
               clustering: HierarchicalClustering,
               epoch: int,
               concentrations: Sequence = ()) -> None:
        """Replace the tree by a new clustering (numpy arrays or tensors)."""
        device = self.epoch.device

        def _set(name, value, dtype):
            setattr(self, name,
                    torch.as_tensor(value, dtype=dtype, device=device))

        _set('assignments', clustering.assignments, torch.long)
        for lvl, cent in enumerate(clustering.centroids):
            _set(f'centroids_{lvl}', cent, torch.float32)
        for lvl, parent in enumerate(clustering.parents):
            _set(f'parents_{lvl}', parent, torch.long)
        for lvl, conc in enumerate(concentrations):
            _set(f'concentrations_{lvl}', conc, torch.float32)
        self.epoch.fill_(epoch)

    @torch.no_grad()
    def load_clustering(self, clustering: Optional[HierarchicalClustering],
                        epoch: int) -> None:
        """Install rank 0's clustering, with its concentrations, on every rank.

        A collective: every rank calls it, rank 0 with the clustering and
        the others with None. Rank 0 broadcasts the tree's sizes first, so
        the other ranks can allocate the buffers it then broadcasts.

        Args:
            clustering (HierarchicalClustering, optional): The new tree, on
                rank 0; ignored on the other ranks.
            epoch (int): The epoch the tree is built for.
        """
        rank = get_rank()
        if rank == 0:
            if clustering is None:
                raise ValueError('Rank 0 must pass the clustering to load.')
            if len(clustering.centroids) != self.num_levels:
                raise ValueError(
                    f'The clustering has {len(clustering.centroids)} levels, '
                    f'the prototypes {self.num_levels}.')
            self.update(clustering, epoch, clustering.concentrations())
        # images, feature dimension, clusters per level
        sizes = torch.tensor(
            [self.assignments.numel(),
             self.centroids_0.shape[1]] + [len(c) for c in self.centroids],
            device=self.epoch.device) if rank == 0 else \
            self.epoch.new_zeros(2 + self.num_levels)
        broadcast(sizes)
        if rank != 0:
            self._allocate(*sizes.tolist())
        for buf in [self.epoch, self.assignments] + self.centroids + \
                self.parents + self.concentrations:
            broadcast(buf)

    def _allocate(self, num_images: int, dim: int, *num_clusters) -> None:
        """Empty buffers of the given sizes, to receive a broadcast tree."""
        new = self.epoch.new_empty
        self.assignments = new(num_images)
        for lvl, k in enumerate(num_clusters):
            setattr(self, f'centroids_{lvl}', new(k, dim, dtype=torch.float))
            setattr(self, f'concentrations_{lvl}', new(k, dtype=torch.float))
            if lvl < self.num_levels - 1:
                setattr(self, f'parents_{lvl}', new(k))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Sizes depend on the data set: adopt the stored ones.
        for name, buf in self._buffers.items():
            value = state_dict.get(prefix + name)
            if value is not None and value.shape != buf.shape:
                self._buffers[name] = buf.new_empty(value.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
