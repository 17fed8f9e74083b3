import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random generators' states in checkpoints, restore on resume.

    mmengine re-seeds on resume, so augmentations after a resume differ from
    those of an uninterrupted run. With the python, numpy and torch states
    in the checkpoint, ``--resume`` continues bit-exactly on one process
    (with several ranks every rank restores rank 0's state). The states are
    applied after every other hook's ``before_train`` (some draw random
    numbers there), i.e. where the uninterrupted run stood after saving.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._loaded = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # `load_from` without resuming starts a new run: keep its seed.
        if getattr(runner, '_resume', False):
            self._loaded = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        state, self._loaded = self._loaded, None
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        # a resumed checkpoint is mapped to the training device, while the
        # generators take CPU byte tensors (seen on a GPU under NCCL)
        torch.set_rng_state(state['torch'].cpu())
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
