from .feature_model import HiRLFeatureModel
from .hcsc import HiRLHCSC
from .hirl import HiRL
from .hirl_neck import HiRLNeck
from .prototypes import HierarchicalPrototypes
from .spd_head import HiRLSPDHead

__all__ = [
    'HiRL', 'HiRLFeatureModel', 'HiRLHCSC', 'HiRLNeck', 'HiRLSPDHead',
    'HierarchicalPrototypes'
]
