from .hooks import HiRLCheckFiniteLossHook, HiRLPrototypeHook, HiRLRNGStateHook

__all__ = ['HiRLCheckFiniteLossHook', 'HiRLPrototypeHook', 'HiRLRNGStateHook']
