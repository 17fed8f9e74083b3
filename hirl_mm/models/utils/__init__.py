from .block_masks import random_block_masks
from .prototype_mixin import HierarchicalPrototypeMixin
from .prototypes import HierarchicalPrototypes

__all__ = [
    'HierarchicalPrototypeMixin', 'HierarchicalPrototypes',
    'random_block_masks'
]
