from .utils import register_safe_globals
from .version import __version__

register_safe_globals()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__all__ = ['__version__']
