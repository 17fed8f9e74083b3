from .prototype_hook import HiRLPrototypeHook

__all__ = ['HiRLPrototypeHook']
