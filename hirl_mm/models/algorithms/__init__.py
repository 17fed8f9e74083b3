from .dino import DINO
from .feature_model import PooledFeatureModel
from .hcsc import HCSC
from .hirl import HIRL
from .ibot import iBOT
from .ssprl import SSPRL

__all__ = ['DINO', 'HCSC', 'HIRL', 'PooledFeatureModel', 'SSPRL', 'iBOT']
