from .cross_scale_head import HiRLCrossScaleHead
from .feature_model import HiRLFeatureModel
from .hcsc import HiRLHCSC
from .hirl import HiRL
from .hirl_neck import HiRLNeck
from .patch_swav_head import HiRLPatchSwAVHead
from .prototypes import HierarchicalPrototypes
from .spd_head import HiRLSPDHead
from .ssprl import HiRLSSPRL

__all__ = [
    'HiRL', 'HiRLFeatureModel', 'HiRLHCSC', 'HiRLNeck', 'HiRLSPDHead',
    'HierarchicalPrototypes', 'HiRLSSPRL', 'HiRLPatchSwAVHead',
    'HiRLCrossScaleHead'
]
