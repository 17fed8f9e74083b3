from .base_hierarchical import HiRLHierarchicalDataset, balanced_subset
from .cifar import HiRLCIFAR10, HiRLCIFAR100
from .coco_multilabel import HiRLCOCOMultiLabel
from .fashion_mnist import HiRLFashionMNIST
from .knn_dataset import HiRLKNNDataset
from .pasted_coco import HiRLPastedCocoDataset
from .pasted_objects import materialize_pasted_objects, paste_objects
from .pasted_seg import HiRLPastedSegDataset
from .photo_mosaics import HiRLPhotoMosaics
from .photo_patches import HiRLPhotoPatches
from .pyramid_patches import HiRLPyramidPatches

__all__ = [
    'HiRLHierarchicalDataset', 'HiRLFashionMNIST', 'HiRLPhotoPatches',
    'HiRLCIFAR10', 'HiRLCIFAR100', 'HiRLKNNDataset', 'balanced_subset',
    'HiRLPhotoMosaics', 'HiRLPyramidPatches', 'HiRLCOCOMultiLabel',
    'HiRLPastedCocoDataset', 'HiRLPastedSegDataset',
    'materialize_pasted_objects', 'paste_objects'
]
