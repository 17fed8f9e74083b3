from .base_hierarchical import HiRLHierarchicalDataset, balanced_subset
from .cifar import HiRLCIFAR10, HiRLCIFAR100
from .fashion_mnist import HiRLFashionMNIST
from .photo_patches import HiRLPhotoPatches

__all__ = [
    'HiRLHierarchicalDataset', 'HiRLFashionMNIST', 'HiRLPhotoPatches',
    'HiRLCIFAR10', 'HiRLCIFAR100', 'balanced_subset'
]
