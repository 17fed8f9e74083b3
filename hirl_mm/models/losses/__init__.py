from .cross_scale_loss import CrossScaleLoss, cross_scale_loss
from .dino_loss import DINOLoss, dino_loss
from .ibot_patch_loss import ibot_patch_loss, iBOTPatchLoss
from .selective_coding import (instance_selective_loss, prototype_negatives,
                               prototype_selective_loss,
                               selection_keep_probability)
from .spd_loss import SPDLoss, path_scores, spd_loss
from .swav_loss import GlobalSwAVLoss, sinkhorn

__all__ = [
    'CrossScaleLoss', 'DINOLoss', 'GlobalSwAVLoss', 'SPDLoss',
    'cross_scale_loss', 'dino_loss', 'iBOTPatchLoss', 'ibot_patch_loss',
    'instance_selective_loss', 'path_scores', 'prototype_negatives',
    'prototype_selective_loss', 'selection_keep_probability', 'sinkhorn',
    'spd_loss'
]
