from .cross_scale_head import HiRLCrossScaleHead
from .dino import HiRLDINO
from .dino_head import HiRLDINOHead
from .dino_neck import HiRLDINONeck
from .feature_model import HiRLFeatureModel
from .hcsc import HiRLHCSC
from .hirl import HiRL
from .hirl_neck import HiRLNeck
from .ibot import HiRLiBOT, random_block_masks
from .ibot_head import HiRLiBOTHead
from .masked_vit import HiRLMaskedViT
from .patch_swav_head import HiRLPatchSwAVHead
from .prototypes import HierarchicalPrototypes
from .simple_fpn import HiRLSimpleFPN
from .spd_head import HiRLSPDHead
from .ssprl import HiRLSSPRL

__all__ = [
    'HiRL', 'HiRLFeatureModel', 'HiRLHCSC', 'HiRLNeck', 'HiRLSPDHead',
    'HierarchicalPrototypes', 'HiRLSSPRL', 'HiRLPatchSwAVHead',
    'HiRLCrossScaleHead', 'HiRLDINO', 'HiRLDINOHead', 'HiRLDINONeck',
    'HiRLiBOT', 'HiRLiBOTHead', 'HiRLMaskedViT', 'random_block_masks',
    'HiRLSimpleFPN'
]
