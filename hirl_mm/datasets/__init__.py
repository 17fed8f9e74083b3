from .base_hierarchical import HiRLHierarchicalDataset, balanced_subset
from .fashion_mnist import HiRLFashionMNIST
from .photo_patches import HiRLPhotoPatches

__all__ = [
    'HiRLHierarchicalDataset', 'HiRLFashionMNIST', 'HiRLPhotoPatches',
    'balanced_subset'
]
