import logging
import pickle
import random
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import all_gather, get_comm_device, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS
from torch.utils.data import get_worker_info


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


def _seed_everything(entropy: Sequence[int]) -> None:
    """Seed this process's python, numpy and torch generators from
    ``entropy`` (non-negative integers) through numpy's ``SeedSequence``."""
    words = np.random.SeedSequence(list(entropy)).generate_state(4)
    random.seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(words)
    torch.manual_seed(int(words[2]) << 32 | int(words[3]))


class EpochSeededWorkers:
    """A dataloader's ``worker_init_fn`` that seeds every worker at the
    first sample it loads in each epoch from ``(seed, rank, epoch,
    worker_id)``.

    mmengine seeds a worker once, when it starts, from ``(seed, rank,
    worker_id)``. Persistent workers start once per run, so their random
    streams run on across epochs: epoch ``e`` of a run resumed at ``e``
    (workers started anew) draws the augmentations of epoch 0, not those of
    the uninterrupted run's epoch ``e``. Seeded per epoch, a worker's
    stream depends only on the epoch and the batches it loaded in it,
    persistent or not, resumed or not.

    The main process writes the epoch into a shared-memory tensor (see
    :meth:`set_epoch`) before it iterates the dataloader; a worker reads it
    before each sample and re-seeds when it changed. In the worker, the
    dataset copy's class is replaced by a subclass whose ``__getitem__`` /
    ``__getitems__`` does that check (a map-style dataset; an iterable one
    is left as it is, with a warning).

    Args:
        init_fn (Callable, optional): The dataloader's own
            ``worker_init_fn``, called first.
        seed (int): The run's seed.
        rank (int): This process's rank.
    """

    def __init__(self, init_fn: Optional[Callable[[int], None]], seed: int,
                 rank: int) -> None:
        self.init_fn, self.seed, self.rank = init_fn, int(seed), int(rank)
        # shared with the workers, fork or spawn (torch pickles the storage)
        self.epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._worker_id = None
        self._seeded_epoch = None

    def set_epoch(self, epoch: int) -> None:
        """Tell the workers the epoch of the batches requested next."""
        self.epoch[0] = epoch

    def reseed_if_new_epoch(self) -> None:
        """In a worker: seed from the epoch if it changed since the last
        sample."""
        epoch = int(self.epoch[0])
        if epoch != self._seeded_epoch:
            self._seeded_epoch = epoch
            _seed_everything(
                (self.seed % 2**32, self.rank, epoch, self._worker_id))

    def __call__(self, worker_id: int) -> None:
        if self.init_fn is not None:
            self.init_fn(worker_id)
        self._worker_id, self._seeded_epoch = worker_id, None
        dataset = get_worker_info().dataset
        if not hasattr(type(dataset), '__getitem__'):
            print_log(
                f'{type(dataset).__name__} is not a map-style dataset: its '
                'workers are seeded once, not per epoch.',
                logger='current',
                level=logging.WARNING)
            return
        cls, methods = type(dataset), {}
        for name in ('__getitem__', '__getitems__'):
            if getattr(cls, name, None) is not None:
                methods[name] = self._reseeding(getattr(cls, name))
        # this worker's own copy of the dataset, so the main process's
        # dataset and the other workers' are untouched
        dataset.__class__ = type(cls.__name__, (cls, ), methods)

    def _reseeding(self, method: Callable) -> Callable:

        def reseed_then_load(dataset, index):
            self.reseed_if_new_epoch()
            return method(dataset, index)

        return reseed_then_load


def seed_workers_per_epoch(dataloader, seed: int,
                           rank: int) -> Optional[EpochSeededWorkers]:
    """Make ``dataloader``'s workers seed themselves per epoch.

    Wraps its ``worker_init_fn`` in :class:`EpochSeededWorkers` and gives it
    a generator of its own: a dataloader draws its workers' base seed from
    the global torch generator each time it starts them, which persistent
    workers do once per run, so a resumed run would draw once more than the
    uninterrupted one.

    Args:
        dataloader (DataLoader): A dataloader whose workers have not started.
        seed (int): The run's seed.
        rank (int): This process's rank.

    Returns:
        EpochSeededWorkers, optional: The new ``worker_init_fn``, or None
        when the dataloader loads in the main process (``num_workers=0``),
        whose generators :class:`RNGStateHook` saves and restores.
    """
    if getattr(dataloader, 'num_workers', 0) == 0:
        return None
    if getattr(dataloader, '_iterator', None) is not None:
        print_log(
            'The training dataloader was iterated before training started: '
            'its persistent workers run with the seeds they started with, '
            'not seeded per epoch, so a resumed run draws other '
            'augmentations than the uninterrupted one.',
            logger='current',
            level=logging.WARNING)
        return None
    init_fn = dataloader.worker_init_fn
    if isinstance(init_fn, EpochSeededWorkers):
        return init_fn
    workers = EpochSeededWorkers(init_fn, seed, rank)
    dataloader.worker_init_fn = workers
    generator = torch.Generator()
    generator.manual_seed(seed % 2**63)
    dataloader.generator = generator
    return workers


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

    The training dataloader's workers (``num_workers > 0``) draw from
    generators of their own, which no checkpoint can hold. With
    ``seed_workers=True`` they are seeded at the start of every epoch from
    ``(seed, rank, epoch, worker_id)`` (:class:`EpochSeededWorkers`), so
    that a resumed epoch draws the augmentations of the uninterrupted run's,
    persistent workers included (mmengine seeds a worker once, when it
    starts: persistent workers of a resumed run would start epoch ``e``
    with the streams of epoch 0).

    Args:
        seed_workers (bool): Seed the training dataloader's workers per
            epoch. Defaults to True.
    """

    # before CheckpointHook (VERY_LOW) in after_train_iter, after the
    # hooks that draw random numbers in before_train
    priority = 'LOW'

    def __init__(self, seed_workers: bool = True) -> None:
        self.seed_workers = seed_workers
        self._workers: Optional[EpochSeededWorkers] = None
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
        loader = getattr(runner, 'train_dataloader', None)
        if self.seed_workers and loader is not None:
            self._workers = seed_workers_per_epoch(loader, runner.seed,
                                                   get_rank())
        state, self._loaded = self._loaded, None
        if state is not None:
            _set_rng_state(state)

    def before_train_epoch(self, runner) -> None:
        # before the loop iterates the dataloader for this epoch
        if self._workers is not None:
            self._workers.set_epoch(runner.epoch)
