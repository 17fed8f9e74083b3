from .cross_scale_loss import cross_scale_loss
from .dino_loss import dino_loss
from .ibot_patch_loss import ibot_patch_loss
from .selective_coding import (instance_selective_loss, prototype_negatives,
                               prototype_selective_loss,
                               selection_keep_probability)
from .spd_loss import path_scores, spd_loss
from .swav_loss import GlobalSwAVLoss, sinkhorn

__all__ = [
    'GlobalSwAVLoss', 'cross_scale_loss', 'dino_loss', 'ibot_patch_loss',
    'instance_selective_loss', 'path_scores', 'prototype_negatives',
    'prototype_selective_loss', 'selection_keep_probability', 'sinkhorn',
    'spd_loss'
]
