from .pyramid_patches import PyramidPatches

__all__ = ['PyramidPatches']
