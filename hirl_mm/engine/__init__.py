from .hooks import HiRLPrototypeHook

__all__ = ['HiRLPrototypeHook']
