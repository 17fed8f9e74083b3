from .block_masks import random_block_masks
from .memory_bank import PrototypeMemoryBank, sample_indices
from .momentum_encoder import keep_own_buffers
from .norm_statistics import batch_statistics
from .projection_capture import ProjectionCapture
from .prototype_mixin import HierarchicalPrototypeMixin
from .prototypes import HierarchicalPrototypes

__all__ = [
    'HierarchicalPrototypeMixin', 'HierarchicalPrototypes',
    'PrototypeMemoryBank', 'ProjectionCapture', 'batch_statistics',
    'keep_own_buffers', 'random_block_masks', 'sample_indices'
]
