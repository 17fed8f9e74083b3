from .finite_loss_hook import FiniteLossCheckHook
from .online_linear_probe_hook import OnlineLinearProbeHook
from .prototype_hook import HierarchicalPrototypeHook
from .rng_state_hook import RNGStateHook
from .ssprl_hook import SSPRLHook

__all__ = [
    'FiniteLossCheckHook', 'HierarchicalPrototypeHook',
    'OnlineLinearProbeHook', 'RNGStateHook', 'SSPRLHook'
]
