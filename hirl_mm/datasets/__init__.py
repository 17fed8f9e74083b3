from .cifar import HierarchicalCIFAR10, HierarchicalCIFAR100
from .fashion_mnist import HierarchicalFashionMNIST, read_fashion_mnist
from .generated import GeneratedDataset, balanced_subset, default_cache_root
from .hierarchical import HierarchicalLabelsMixin
from .knn_dataset import KNNDataset
from .multilabel import COCOMultiLabel, PhotoMosaics
from .photo_patches import PhotoPatches
from .transforms import PyramidPatches

__all__ = [
    'COCOMultiLabel', 'GeneratedDataset', 'HierarchicalCIFAR10',
    'HierarchicalCIFAR100', 'HierarchicalFashionMNIST',
    'HierarchicalLabelsMixin', 'KNNDataset', 'PhotoMosaics', 'PhotoPatches',
    'PyramidPatches', 'balanced_subset', 'default_cache_root',
    'read_fashion_mnist'
]
