from .base_hierarchical import HiRLHierarchicalDataset, balanced_subset
from .cifar import HiRLCIFAR10, HiRLCIFAR100
from .fashion_mnist import HiRLFashionMNIST
from .knn_dataset import HiRLKNNDataset
from .photo_patches import HiRLPhotoPatches

__all__ = [
    'HiRLHierarchicalDataset', 'HiRLFashionMNIST', 'HiRLPhotoPatches',
    'HiRLCIFAR10', 'HiRLCIFAR100', 'HiRLKNNDataset', 'balanced_subset'
]
