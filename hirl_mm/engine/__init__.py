from .feature_extractor import (extract_backbone_features,
                                extract_feature_shard, extract_features)
from .hooks import (FiniteLossCheckHook, HierarchicalPrototypeHook,
                    RNGStateHook, SSPRLHook)
from .optimizers import (PerParameterClipAmpOptimWrapper,
                         PerParameterClipOptimWrapper,
                         clip_grad_norm_per_parameter_)
from .runner import ResumableEpochBasedTrainLoop
from .schedulers import PartialCosineAnnealingParamScheduler

__all__ = [
    'FiniteLossCheckHook', 'HierarchicalPrototypeHook', 'RNGStateHook',
    'SSPRLHook', 'PerParameterClipOptimWrapper',
    'PerParameterClipAmpOptimWrapper', 'clip_grad_norm_per_parameter_',
    'extract_backbone_features', 'extract_feature_shard', 'extract_features',
    'ResumableEpochBasedTrainLoop', 'PartialCosineAnnealingParamScheduler'
]
