"""One error on every rank, for checks whose outcome may differ by rank."""
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from mmengine.dist import (all_gather, broadcast, get_comm_device, get_rank,
                           get_world_size)

# Errors that keep their type when raised on every rank; others become a
# RuntimeError there (their constructors may need more than a message).
SHARED_ERRORS = {
    e.__name__: e
    for e in (AssertionError, AttributeError, FileNotFoundError, IndexError,
              KeyError, NotImplementedError, OSError, RuntimeError, TypeError,
              ValueError)
}


def raise_on_all_ranks(error: Optional[Exception]) -> None:
    """Raise the error of the lowest rank that has one, on every rank.

    A collective for a check whose outcome may differ between ranks: each
    rank passes what its check raised (or None). A rank that raised alone
    would leave the others waiting in their next collective until NCCL's
    watchdog ends the job; here every rank raises the same exception, with
    the lowest failing rank's type (one of :data:`SHARED_ERRORS`, else
    ``RuntimeError``) and message, and the failing ranks named. The tensors
    sent are on ``mmengine.dist.get_comm_device()``: one all-gather of an
    int, and a broadcast of the message only when a rank failed. With one
    process, ``error`` is raised as it is.

    Args:
        error (Exception, optional): This rank's error, None if its checks
            passed.
    """
    world = get_world_size()
    if world == 1:
        if error is not None:
            raise error
        return
    payload = b'' if error is None else '\n'.join(
        (type(error).__name__, _message(error))).encode()
    comm = get_comm_device()
    sizes = all_gather(torch.tensor([len(payload)], device=comm))
    failed = [r for r, size in enumerate(sizes) if int(size)]
    if not failed:
        return
    src = failed[0]
    buf = torch.zeros(int(sizes[src]), dtype=torch.uint8, device=comm)
    if get_rank() == src:
        buf.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    broadcast(buf, src)
    name, message = buf.cpu().numpy().tobytes().decode().split('\n', 1)
    if len(failed) == 1:
        where = f'raised on rank {src} of {world}'
    else:
        where = (f'raised on ranks {", ".join(map(str, failed))} of {world}; '
                 f"rank {src}'s message")
    raise SHARED_ERRORS.get(name, RuntimeError)(f'{message} ({where})') \
        from error


@contextmanager
def errors_on_all_ranks() -> Iterator[None]:
    """Run a block of checks on every rank and raise what it raises on any
    rank on all of them (:func:`raise_on_all_ranks`).

    The block must hold no collective: a rank whose check raises leaves the
    block there, the others run it to its end.
    """
    error = None
    try:
        yield
    except Exception as e:  # noqa: B902  re-raised on every rank below
        error = e
    raise_on_all_ranks(error)


def _message(error: Exception) -> str:
    # str(KeyError('x')) is "'x'"
    if isinstance(error, KeyError) and len(error.args) == 1 and \
            isinstance(error.args[0], str):
        return error.args[0]
    return str(error)
