from .finite_loss_hook import HiRLCheckFiniteLossHook
from .prototype_hook import HiRLPrototypeHook
from .rng_state_hook import HiRLRNGStateHook

__all__ = ['HiRLCheckFiniteLossHook', 'HiRLPrototypeHook', 'HiRLRNGStateHook']
