from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from hirl_mm.utils.hierarchical_kmeans import HierarchicalClustering


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

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Sizes depend on the data set: adopt the stored ones.
        for name, buf in self._buffers.items():
            value = state_dict.get(prefix + name)
            if value is not None and value.shape != buf.shape:
                self._buffers[name] = buf.new_empty(value.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
