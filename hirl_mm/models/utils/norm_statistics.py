from contextlib import contextmanager

import torch.nn as nn
from mmengine.dist import get_world_size
from torch.nn.modules.batchnorm import _BatchNorm


def _across_ranks(norm: nn.Module) -> bool:
    """Whether ``norm`` normalises over the batches of several ranks."""
    return isinstance(norm, nn.SyncBatchNorm) and \
        get_world_size(norm.process_group) > 1


@contextmanager
def batch_statistics(module: nn.Module, batch_size: int):
    """Normalise by the batch's statistics in the norm layers of ``module``
    that have them, leaving their running statistics untouched.

    A BN layer normalises over this rank's batch of ``batch_size`` images:
    one image has no statistics (a single value per channel), so it keeps
    the running ones. A SyncBN layer under several ranks normalises over
    all ranks' batches together and all-gathers their statistics in every
    forward pass (a collective): it takes the batch's statistics whatever
    this rank's batch size, so that every rank makes the same calls; the
    batch then holds an image per rank at least, as long as every rank
    passes one (see :func:`~hirl_mm.engine.extract_feature_shard`).

    Args:
        module (nn.Module): The module whose norm layers switch.
        batch_size (int): Images in this rank's batch.
    """
    norms = [
        m for m in module.modules()
        if isinstance(m, _BatchNorm) and (batch_size > 1 or _across_ranks(m))
    ]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(norms, saved):
            m.training, m.track_running_stats = training, track
