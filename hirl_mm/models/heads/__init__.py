from .cross_scale_head import CrossScaleHead
from .dino_head import DINOHead
from .ibot_head import iBOTHead
from .patch_swav_head import PatchSwAVHead
from .spd_head import SPDHead

__all__ = [
    'CrossScaleHead', 'DINOHead', 'PatchSwAVHead', 'SPDHead', 'iBOTHead'
]
