from .dino_neck import DINONeck
from .hirl_neck import HIRLNeck

__all__ = ['DINONeck', 'HIRLNeck']
