"""MMDetection / MMSegmentation parts for transfer benchmarks.

Imported only by the detection / segmentation configs
(``custom_imports=dict(imports=['hirl_mm.transfer'])``): importing
``hirl_mm`` alone never imports mmdet or mmseg.
"""
from .pasted_coco import PastedObjectsCocoDataset
from .pasted_objects import materialize_pasted_objects, paste_objects
from .pasted_seg import PastedObjectsSegDataset
from .simple_feature_pyramid import SimpleFeaturePyramid

__all__ = [
    'PastedObjectsCocoDataset', 'PastedObjectsSegDataset',
    'SimpleFeaturePyramid', 'materialize_pasted_objects', 'paste_objects'
]
