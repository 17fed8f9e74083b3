"""Safe checkpoint loading for torch >= 2.6 with mmengine.

torch >= 2.6 unpickles checkpoints with ``weights_only=True``. mmengine's
checkpoints also hold the message hub's ``HistoryBuffer`` objects, numpy
arrays and scalars, which the restricted unpickler refuses. Rather than
turning safe loading off, allow exactly those globals: any other pickled
object in a checkpoint is still refused.

``HistoryBuffer.__getstate__`` also pickles its class-level statistics
functions as ``getattr(HistoryBuffer, name)``; allowing ``getattr`` would
open the allow-list to any attribute, so buffers are saved without them
(``__setstate__`` restores the defaults and registered methods are
class-level anyway).
"""
import collections

import numpy as np
import torch

try:
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct, scalar


def mmengine_safe_globals() -> list:
    """The globals an mmengine checkpoint needs besides tensors."""
    from mmengine.logging.history_buffer import HistoryBuffer
    dtypes = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    return [
        HistoryBuffer, np.ndarray, np.dtype, _reconstruct, scalar,
        collections.OrderedDict, collections.defaultdict, *dtypes
    ]


def _history_buffer_state(self) -> dict:
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def register_safe_globals() -> None:
    """Add the mmengine globals to torch's ``weights_only`` allow-list."""
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_state
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_safe_globals())


def check_checkpoint(path: str) -> None:
    """Raise a clear error if ``path`` is missing or not a readable
    checkpoint (e.g. truncated by a crash), before any training starts."""
    import os.path as osp
    if not path:  # e.g. `--pretrained $CKPT` with CKPT unset
        raise ValueError('The checkpoint path is empty.')
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path} does not exist.')
    try:
        torch.load(path, map_location='cpu', mmap=True)
    except Exception as e:  # noqa: B902  (torch raises many kinds)
        raise RuntimeError(
            f'Cannot read checkpoint {path}: it is truncated, corrupt or '
            f'holds objects safe loading refuses ({type(e).__name__}: '
            f'{str(e).splitlines()[0]}). Nothing was changed in its '
            'folder.') from e
