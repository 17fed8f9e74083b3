from abc import ABCMeta, abstractmethod
from typing import List, Optional, Sequence

import torch

from hirl_mm.clustering import HierarchicalClustering
from .memory_bank import PrototypeMemoryBank
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
    - :meth:`load_clustering`, to install the new tree on every rank;
    - with ``feature_source='memory_bank'``, :meth:`enable_memory_bank` and
      :attr:`memory_bank`, to collect the features that the model hands to
      :meth:`record_proto_feat` in its training loss (a no-op otherwise),
      and to carry them through a checkpoint (the bank's ``gather_state``
      and ``load_state``).

    The tree lives in the ``prototypes`` sub-module
    (:class:`HierarchicalPrototypes`), so checkpoints carry it under
    ``prototypes.*``; the model reads it there in its loss.
    """

    prototypes: HierarchicalPrototypes
    _memory_bank: Optional[PrototypeMemoryBank] = None

    def init_prototypes(self, num_clusters: Sequence[int]) -> None:
        """Create the (empty) prototype store.

        Args:
            num_clusters (Sequence[int]): Prototypes per level, finest first.
        """
        self.prototypes = HierarchicalPrototypes(num_clusters)
        # Every rank installs the same tree (load_clustering): DDP must not
        # broadcast it (41000 x 2048 floats at ImageNet scale) every step.
        self._ddp_params_and_buffers_to_ignore = [
            f'prototypes.{name}'
            for name, _ in self.prototypes.named_buffers()
        ]

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

    @property
    def memory_bank(self) -> Optional[PrototypeMemoryBank]:
        """The bank :meth:`record_proto_feat` fills; None unless enabled."""
        return self._memory_bank

    def enable_memory_bank(self,
                           num_samples: int,
                           momentum: float = 0.,
                           views: str = 'first') -> PrototypeMemoryBank:
        """Create (or keep) the memory bank of a training set of
        ``num_samples`` images; it records only while its ``recording``
        flag is set (by the hook).

        Args:
            num_samples (int): Images in the training set.
            momentum (float): The bank's row momentum. Defaults to 0.
            views (str): What :meth:`record_proto_feat` is handed: the rows
                of the ``'first'`` view of each image, or of ``'all'`` the
                views the step projects. Defaults to ``'first'``.

        Returns:
            PrototypeMemoryBank: The bank.
        """
        bank = self._memory_bank
        if bank is None or bank.num_samples != num_samples:
            # a plain attribute, not a sub-module: not in the state dict
            # (its rows are a rank's own); the hook checkpoints them
            bank = self._memory_bank = PrototypeMemoryBank(
                num_samples, momentum, views)
        else:  # the settings apply to the rows held
            new = PrototypeMemoryBank(num_samples, momentum, views)
            bank.momentum, bank.views = new.momentum, new.views
        return bank

    def record_proto_feat(self, feats: torch.Tensor,
                          sample_idx: torch.Tensor) -> None:
        """Hand the prototype-branch features of the training images to the
        memory bank (a no-op unless the hook is recording).

        Call it once per training step in the loss, on every rank, with
        the features :meth:`extract_proto_feat` would give (detached; they
        are L2-normalised here), e.g. the momentum branch's projection of
        the first view, or with ``memory_bank.views == 'all'`` of every
        view (an id once per view: the bank averages them).

        Args:
            feats (torch.Tensor): (B, D) features.
            sample_idx (torch.Tensor): (B, ) the images' ``sample_idx``.
        """
        bank = self._memory_bank
        if bank is not None and bank.recording:
            bank.record(feats, sample_idx)
