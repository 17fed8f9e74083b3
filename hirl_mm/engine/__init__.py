from .feature_extractor import extract_backbone_features, extract_features
from .hooks import FiniteLossCheckHook, HierarchicalPrototypeHook, RNGStateHook

__all__ = [
    'FiniteLossCheckHook', 'HierarchicalPrototypeHook', 'RNGStateHook',
    'extract_backbone_features', 'extract_features'
]
