from .finite_loss_hook import FiniteLossCheckHook
from .prototype_hook import HierarchicalPrototypeHook
from .rng_state_hook import RNGStateHook
from .ssprl_hook import SSPRLHook

__all__ = [
    'FiniteLossCheckHook', 'HierarchicalPrototypeHook', 'RNGStateHook',
    'SSPRLHook'
]
