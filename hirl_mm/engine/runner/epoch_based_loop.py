import logging
from typing import Sequence

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import LOOPS

from ..hooks.rng_state_hook import random_states_kept

# Runtime information (saved in checkpoints): the batches of the epoch in
# progress trained, this one included, from the start of an iteration on.
BATCHES_DONE_KEY = 'epoch_batches_done'


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's :class:`EpochBasedTrainLoop` that resumes inside an epoch.

    Resumed from an iteration checkpoint (``CheckpointHook(by_epoch=False)``)
    saved after batch ``k`` of an epoch, mmengine's loop trains that epoch
    again from its first batch while the iteration counter goes on from the
    checkpoint's. This loop trains batches ``k`` to the end, with their
    indices, as the uninterrupted run did: it calls ``before_train_epoch``
    (the sampler takes the epoch's order, ``seed + epoch``), iterates the
    dataloader over the ``k`` batches already trained without running the
    model on them, so that the dataloader workers' random streams stand
    where the uninterrupted run's stood, and trains from there. Every other
    run (fresh, or resumed from an epoch checkpoint) behaves as mmengine's
    loop.

    The hooks' ``before_train_epoch`` and the skipped batches' loading draw
    random numbers the uninterrupted run drew before the checkpoint: the
    process's generators are put back as they were after them, i.e. as
    :class:`RNGStateHook` restored them. With that hook (every rank's states
    in the checkpoint) and :class:`HierarchicalPrototypeHook` (the memory
    bank's rows recorded so far in the epoch, kept through the resumed
    ``before_train_epoch``, see :attr:`resumed_batches`), a run resumed
    inside an epoch gives every rank the losses and the prototypes of the
    uninterrupted run, bit for bit, with or without dataloader workers,
    persistent ones included: :class:`RNGStateHook` seeds the workers at
    the start of each epoch from ``(seed, rank, epoch, worker_id)``, and
    the skipped batches' loading advances their streams as the
    uninterrupted run's.

    ``k`` is the count of batches done that this loop writes into the
    runtime information (``epoch_batches_done``, saved with the message
    hub in every checkpoint); a checkpoint of mmengine's loop is read by its
    iteration counter. Skipping costs what loading ``k`` batches costs (as
    mmengine's ``IterBasedTrainLoop`` on resume). A checkpoint of another
    epoch length (another batch size or world size) has no batch to resume
    at: its epoch is trained again from its first batch, as mmengine's loop
    does, with a warning.

    The configs with a :class:`HierarchicalPrototypeHook` use it. Over a
    base config's ``type='EpochBasedTrainLoop'``::

        train_cfg = dict(type='ResumableEpochBasedTrainLoop')

    and over ``by_epoch=True``, which ``type`` excludes::

        train_cfg = dict(
            _delete_=True, type='ResumableEpochBasedTrainLoop', max_epochs=200)

    Args:
        runner (Runner): A reference of runner.
        dataloader (Dataloader or dict): A dataloader object or a dict to
            build a dataloader.
        max_epochs (int): Total training epochs.
        val_begin (int): The epoch that begins validating. Defaults to 1.
        val_interval (int): Validation interval. Defaults to 1.
        dynamic_intervals (List[Tuple[int, int]], optional): The first
            element in the tuple is a milestone and the second element is a
            interval. The interval is used after the corresponding
            milestone. Defaults to None.
    """

    _resumed_batches = 0

    @property
    def resumed_batches(self) -> int:
        """int: Batches of the current epoch trained before the run resumed,
        which it skips: 0 unless the run resumed inside this epoch. Set from
        the start of :meth:`run` to the end of the epoch's
        ``before_train_epoch``, where hooks tell a resumed epoch from a new
        one (the prototype hook keeps the memory bank's rows)."""
        return self._resumed_batches

    def _batches_done_before_resume(self) -> int:
        """The batches of the current epoch the resumed checkpoint had
        trained: 0 unless it was saved inside this epoch.

        Read in the runtime information the checkpoint carries, before
        ``before_train`` rewrites it: RuntimeInfoHook's epoch in progress
        is the checkpoint's epoch for one saved inside it, the epoch before
        for an epoch checkpoint (counted at the epoch's end), whatever the
        iteration counter (which mmengine's loop, resumed inside an epoch,
        leaves ahead of the epochs). This loop records the batches done,
        mmengine's does not: they are then the iterations past the epoch's
        start.
        """
        hub = self.runner.message_hub
        if self._iter == 0 or hub.get_info('epoch') != self._epoch:
            return 0
        length = len(self.dataloader)
        max_iters, max_epochs = (hub.get_info('max_iters'),
                                 hub.get_info('max_epochs'))
        saved = max_iters // max_epochs if max_iters and max_epochs \
            else length
        done = hub.get_info(BATCHES_DONE_KEY)
        if done is None:
            done = self._iter - self._epoch * saved
        if saved != length or not 0 < done <= length:
            print_log(
                f'The checkpoint was saved inside epoch {self._epoch + 1} '
                f'of {saved} iterations, after {done}; an epoch has '
                f'{length} now: the epoch is trained again from its first '
                'batch.',
                logger='current',
                level=logging.WARNING)
            return 0
        return done

    def run(self):
        """Launch training."""
        self._resumed_batches = self._batches_done_before_resume()
        return super().run()

    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        """Iterate one min-batch.

        Args:
            idx (int): Its index in the epoch.
            data_batch (Sequence[dict]): Batch of data from dataloader.
        """
        # the checkpoints of this iteration are saved at its end, after it
        self.runner.message_hub.update_info(BATCHES_DONE_KEY, idx + 1)
        super().run_iter(idx, data_batch)

    def run_epoch(self) -> None:
        """Iterate one epoch, from the batch the run resumed at."""
        skip = self._resumed_batches
        if not skip:
            return super().run_epoch()
        print_log(
            f'Resuming inside epoch {self._epoch + 1}: loading its first '
            f'{skip} batches, already trained, without training on them.',
            logger='current')
        with random_states_kept():
            self.runner.call_hook('before_train_epoch')
            self._resumed_batches = 0
            batches = iter(self.dataloader)
            for _ in range(skip):
                next(batches)
        self.runner.model.train()
        for idx, data_batch in enumerate(batches, start=skip):
            self.run_iter(idx, data_batch)

        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
