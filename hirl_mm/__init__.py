"""hirl_mm: hierarchical self-supervised learning for MMPretrain.

Importing the package (configs do it through
``custom_imports=dict(imports=['hirl_mm'])``) registers its models, hooks,
datasets, transforms and metrics into MMPretrain's registries, and calls
:func:`hirl_mm.utils.register_safe_globals` once, which puts the globals an
mmengine checkpoint holds on torch's ``weights_only`` allow-list (the tools
call it explicitly too). It imports neither mmdet nor mmseg: their parts
live in :mod:`hirl_mm.transfer`, imported by the detection / segmentation
configs.
"""
from . import clustering, datasets, engine, evaluation, models  # noqa: F401
from .utils import register_safe_globals
from .version import __version__

register_safe_globals()

__all__ = ['__version__', 'register_safe_globals']
