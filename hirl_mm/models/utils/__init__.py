from .block_masks import random_block_masks
from .memory_bank import PrototypeMemoryBank
from .momentum_encoder import keep_own_buffers
from .prototype_mixin import HierarchicalPrototypeMixin
from .prototypes import HierarchicalPrototypes

__all__ = [
    'HierarchicalPrototypeMixin', 'HierarchicalPrototypes',
    'PrototypeMemoryBank', 'keep_own_buffers', 'random_block_masks'
]
