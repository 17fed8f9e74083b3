from abc import ABCMeta, abstractmethod
from typing import List, Optional, Sequence

import torch

from hirl_mm.clustering import HierarchicalClustering
from .prototypes import HierarchicalPrototypes


class HierarchicalPrototypeMixin(metaclass=ABCMeta):
    """What a model offers :class:`HierarchicalPrototypeHook`.

    A model with a tree of prototypes (HIRL, HCSC) calls
    :meth:`init_prototypes` in its ``__init__`` (after ``nn.Module``'s) and
    implements :meth:`extract_proto_feat`. The hook then only uses:

    - :attr:`num_clusters`, to check the data can hold the tree;
    - :meth:`extract_proto_feat`, to embed every training image (after the
      model's ``data_preprocessor``, which a ``BaseModel`` has);
    - :attr:`prototype_epoch`, to skip an epoch whose tree a resumed
      checkpoint already holds;
    - :meth:`load_clustering`, to install the new tree on every rank.

    The tree lives in the ``prototypes`` sub-module
    (:class:`HierarchicalPrototypes`), so checkpoints carry it under
    ``prototypes.*``; the model reads it there in its loss.
    """

    prototypes: HierarchicalPrototypes

    def init_prototypes(self, num_clusters: Sequence[int]) -> None:
        """Create the (empty) prototype store.

        Args:
            num_clusters (Sequence[int]): Prototypes per level, finest first.
        """
        self.prototypes = HierarchicalPrototypes(num_clusters)

    @property
    def num_clusters(self) -> List[int]:
        """Prototypes per level, finest first."""
        return self.prototypes.num_clusters

    @property
    def prototype_epoch(self) -> int:
        """The epoch the current tree was built for, -1 before the first."""
        return int(self.prototypes.epoch)

    @abstractmethod
    def extract_proto_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """L2-normalised features the prototypes are built from.

        Called in eval mode without gradients on preprocessed images.

        Args:
            inputs (torch.Tensor): Images, (B, C, H, W).

        Returns:
            torch.Tensor: (B, D) features.
        """

    def load_clustering(self, clustering: Optional[HierarchicalClustering],
                        epoch: int) -> None:
        """Install a new tree on every rank (a collective).

        Args:
            clustering (HierarchicalClustering, optional): The tree on rank
                0, None on the other ranks.
            epoch (int): The epoch the tree is built for.
        """
        self.prototypes.load_clustering(clustering, epoch)
