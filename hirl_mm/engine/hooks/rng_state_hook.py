import logging
import pickle
import random
from contextlib import contextmanager
from typing import Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather, get_comm_device, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS


def _rng_state() -> dict:
    """This process's python, numpy, torch (and CUDA) generator states."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    """Put this process's generators back as :func:`_rng_state` saw them."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    # a resumed checkpoint is mapped to the training device, while the
    # generators take CPU byte tensors (seen on a GPU under NCCL)
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


@contextmanager
def random_states_kept() -> Iterator[None]:
    """Leave this process's python, numpy, torch and CUDA generators as
    they were, whatever the block draws."""
    state = _rng_state()
    try:
        yield
    finally:
        _set_rng_state(state)


def saves_iter_checkpoint(runner) -> bool:
    """Whether a ``CheckpointHook(by_epoch=False)`` saves at the end of this
    iteration (in its ``after_train_iter``)."""
    return any(
        isinstance(hook, CheckpointHook) and not hook.by_epoch and (
            hook.every_n_train_iters(runner, hook.interval,
                                     getattr(hook, 'save_begin', 0)) or
            (hook.save_last and hook.is_last_train_iter(runner)))
        for hook in runner.hooks)


def _all_gather_states(state: dict) -> List[dict]:
    """Every rank's ``state`` (a collective).

    Pickled into bytes on the communication device: NCCL takes no CPU
    tensor, and the states hold CPU tensors and numpy arrays.
    """
    comm = get_comm_device()
    data = torch.frombuffer(bytearray(pickle.dumps(state)), dtype=torch.uint8)
    sizes = [
        int(n) for n in all_gather(torch.tensor([len(data)], device=comm))
    ]
    padded = torch.zeros(max(sizes), dtype=torch.uint8, device=comm)
    padded[:len(data)] = data.to(comm)
    return [
        pickle.loads(part[:size].cpu().numpy().tobytes())
        for part, size in zip(all_gather(padded), sizes)
    ]


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save every rank's random generators' states in checkpoints, restore
    each rank's own on resume.

    mmengine re-seeds on resume, so augmentations (and anything else drawn
    at random, e.g. SPD's negative paths, which each rank draws for its own
    batch) after a resume differ from those of an uninterrupted run. With
    the python, numpy, torch and CUDA states of every rank in the
    checkpoint, ``--resume`` continues bit-exactly: rank r restores rank
    r's states. They are applied in ``before_train``, after the hooks that
    draw random numbers there (the prototype hook builds a sampler, which
    draws its seed), i.e. where the uninterrupted run stood after saving.

    mmengine writes a checkpoint on rank 0 alone (``Runner.save_checkpoint``
    is ``master_only``, so ``before_save_checkpoint`` runs there only).
    Hence in ``after_train_iter`` the ranks' states are gathered (a few KB
    each, through the communication device) at the last iteration of each
    epoch, before any ``after_train_epoch`` (where an epoch checkpoint is
    saved), and at each iteration where a ``CheckpointHook(by_epoch=False)``
    saves, before it saves (its priority, ``VERY_LOW``, is below this
    hook's). Rank 0 writes them as ``rng_state_per_rank``, next to its own
    states of the moment as ``rng_state`` (the one state earlier versions
    wrote). A run resumed from an iteration checkpoint continues exactly
    with :class:`ResumableEpochBasedTrainLoop` (mmengine's
    ``EpochBasedTrainLoop`` trains that epoch again from its first batch).

    Resuming from a checkpoint with rank 0's states only gives them to every
    rank (as earlier versions did), with a warning. Resuming on more ranks
    than the checkpoint's restores ranks below its world size and leaves
    the others with this run's seed, with a warning.
    """

    # before CheckpointHook (VERY_LOW) in after_train_iter, after the
    # hooks that draw random numbers in before_train
    priority = 'LOW'

    def __init__(self) -> None:
        self._loaded = None
        # ([(epoch, iter) of the checkpoints it is for], states)
        self._gathered = None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if get_world_size() == 1:
            return
        # the metas of the checkpoints saved next: mmengine counts this
        # iteration, and the epoch at its end, after the hooks ran
        keys = []
        if self.end_of_epoch(runner.train_dataloader, batch_idx):
            keys.append((runner.epoch + 1, runner.iter + 1))
        if saves_iter_checkpoint(runner):
            keys.append((runner.epoch, runner.iter + 1))
        if not keys:
            return
        states = _all_gather_states(_rng_state())
        if get_rank() == 0:  # which writes the checkpoints
            self._gathered = (keys, states)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = _rng_state()
        checkpoint['rng_state'] = state
        if get_world_size() == 1:
            checkpoint['rng_state_per_rank'] = [state]
            return
        meta = checkpoint.get('meta', {})
        if self._gathered is not None and \
                (meta.get('epoch'), meta.get('iter')) in self._gathered[0]:
            checkpoint['rng_state_per_rank'] = [state] + self._gathered[1][1:]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # `load_from` without resuming starts a new run: keep its seed.
        if not getattr(runner, '_resume', False):
            return
        rank, world = get_rank(), get_world_size()
        states: Optional[list] = checkpoint.get('rng_state_per_rank')
        if states is None:
            self._loaded = checkpoint.get('rng_state')
            if self._loaded is not None and world > 1:
                print_log(
                    'The checkpoint holds the random states of rank 0 only '
                    '(one written before per-rank states): every rank '
                    'restores them, so the '
                    'ranks other than 0 draw other random numbers than an '
                    'uninterrupted run would.',
                    logger='current',
                    level=logging.WARNING)
            return
        if len(states) != world:
            print_log(
                f'The checkpoint holds the random states of {len(states)} '
                f'ranks, this run has {world}: ranks below '
                f'{min(len(states), world)} restore theirs, any other keeps '
                "this run's seed.",
                logger='current',
                level=logging.WARNING)
        self._loaded = states[rank] if rank < len(states) else None

    def before_train(self, runner) -> None:
        state, self._loaded = self._loaded, None
        if state is not None:
            _set_rng_state(state)
