from .feature_model import HiRLFeatureModel
from .hirl import HiRL
from .hirl_neck import HiRLNeck
from .prototypes import HierarchicalPrototypes
from .spd_head import HiRLSPDHead

__all__ = [
    'HiRL', 'HiRLFeatureModel', 'HiRLNeck', 'HiRLSPDHead',
    'HierarchicalPrototypes'
]
