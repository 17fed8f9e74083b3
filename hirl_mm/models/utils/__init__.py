from .block_masks import random_block_masks
from .memory_bank import PrototypeMemoryBank
from .prototype_mixin import HierarchicalPrototypeMixin
from .prototypes import HierarchicalPrototypes

__all__ = [
    'HierarchicalPrototypeMixin', 'HierarchicalPrototypes',
    'PrototypeMemoryBank', 'random_block_masks'
]
