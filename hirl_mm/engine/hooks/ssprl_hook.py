import os.path as osp
from typing import List, Optional, Sequence

import torch
from mmengine.device import get_device
from mmengine.dist import get_rank, is_distributed
from mmengine.logging import MMLogger
from mmpretrain.engine.hooks import SwAVHook
from mmpretrain.registry import HOOKS
from mmpretrain.utils import get_ori_model


@HOOKS.register_module()
class SSPRLHook(SwAVHook):
    """MMPretrain's ``SwAVHook`` plus SS-PRL's patch-level queues.

    Besides the global queue and the frozen prototypes of ``SwAVHook``,
    every pyramid scale ``i`` with ``patch_queue_lengths[i] > 0`` gets a
    queue of earlier patch embeddings, started at ``epoch_queue_starts``
    like the global one, which the scale's ``GlobalSwAVLoss`` (in its
    :class:`PatchSwAVHead`) uses and fills exactly as the global loss uses
    its own: the reference's ``local_queues`` (WesleyHsieh0806/SS-PRL,
    ``main_SSPRL.py``, lines 266-279, 301-308 and 421-441). Lengths are
    totals over all processes, rounded down to a multiple of the global
    batch; each process holds ``length // world_size`` rows per assigned
    view. Like the global queue, the patch queues are saved to
    ``work_dir`` after every ``interval`` epochs and loaded back at start.

    Args:
        batch_size (int): The batch size per GPU.
        patch_queue_lengths (Sequence[int]): Queue length of each pyramid
            scale (0: none). Defaults to () (no patch queue).
        **kwargs: ``SwAVHook``'s other arguments (``epoch_queue_starts``,
            ``queue_length``, ``frozen_layers_cfg``, ...).
    """

    def __init__(self,
                 batch_size: int,
                 patch_queue_lengths: Sequence[int] = (),
                 **kwargs) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if any(n < 0 for n in patch_queue_lengths):
            raise ValueError('patch_queue_lengths must be >= 0, got '
                             f'{list(patch_queue_lengths)}.')
        self.patch_queue_lengths = [
            int(n) - int(n) % self.batch_size for n in patch_queue_lengths
        ]
        self.patch_queues: List[Optional[torch.Tensor]] = [None] * len(
            self.patch_queue_lengths)

    def _patch_losses(self, runner) -> list:
        model = get_ori_model(runner.model)
        heads = getattr(model, 'patch_heads', None)
        if heads is None or len(heads) != len(self.patch_queue_lengths):
            raise ValueError(
                f'SSPRLHook has {len(self.patch_queue_lengths)} patch queue '
                f'lengths; the model ({type(model).__name__}) has '
                f'{"no" if heads is None else len(heads)} patch heads.')
        return [head.loss_module for head in heads]

    def _patch_queue_path(self, runner, i: int) -> str:
        rank = f'_{get_rank()}' if is_distributed() else ''
        return osp.join(runner.work_dir, f'patch_queue{i}{rank}.pth')

    def before_run(self, runner) -> None:
        """Load the patch queues saved in ``work_dir``, if any."""
        super().before_run(runner)
        losses = self._patch_losses(runner)
        for i, loss in enumerate(losses):
            path = self._patch_queue_path(runner, i)
            if osp.isfile(path):
                self.patch_queues[i] = torch.load(path)['queue']
                loss.queue = self.patch_queues[i]
                MMLogger.get_current_instance().info(
                    f'Load patch queue from file: {path}')

    def before_train_epoch(self, runner) -> None:
        """Start the patch queues due; each loss restarts its queue check."""
        super().before_train_epoch(runner)
        for i, loss in enumerate(self._patch_losses(runner)):
            if self.patch_queue_lengths[i] > 0 and self.patch_queues[i] is \
                    None and runner.epoch >= self.epoch_queue_starts:
                self.patch_queues[i] = torch.zeros(
                    len(loss.crops_for_assign),
                    self.patch_queue_lengths[i] // runner.world_size,
                    loss.prototypes.in_features,
                    device=get_device())
            loss.queue = self.patch_queues[i]
            loss.use_queue = False

    def after_train_epoch(self, runner) -> None:
        """Save the patch queues in ``work_dir``."""
        super().after_train_epoch(runner)
        for i, loss in enumerate(self._patch_losses(runner)):
            self.patch_queues[i] = loss.queue
            if loss.queue is not None and self.every_n_epochs(
                    runner, self.interval):
                torch.save({'queue': loss.queue},
                           self._patch_queue_path(runner, i))
