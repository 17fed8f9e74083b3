from .per_parameter_clip import (PerParameterClipAmpOptimWrapper,
                                 PerParameterClipOptimWrapper,
                                 clip_grad_norm_per_parameter_)

__all__ = [
    'PerParameterClipAmpOptimWrapper', 'PerParameterClipOptimWrapper',
    'clip_grad_norm_per_parameter_'
]
