"""A simulated NCCL world on 2 gloo processes, and 2-rank launchers.

How the simulation works (2 gloo processes; gloo does the real work):

- ``mmengine``'s ``get_comm_device`` (everywhere it was imported) returns
  ``SIM_DEVICE = cpu:1``, the simulated accelerator that NCCL would use.
- A ``TorchFunctionMode`` turns every tensor created on, or moved to,
  ``cpu:1`` into an :class:`OnComm` tensor (a CPU tensor whose ``device``
  reads ``cpu:1``; results of ops on it stay ``OnComm``, as CUDA results
  stay on CUDA), and ``.cpu()`` / ``.to('cpu')`` back into plain tensors.
- mmengine's ``cast_data_device`` accepts an ``OnComm`` result for a plain
  ``out`` (its type check would tell the two "devices" apart).
- Every ``torch.distributed`` collective is wrapped: handed a tensor that
  is not ``OnComm`` (i.e. not on the communication device), it raises, as
  NCCL does for a CPU tensor.

The model runs on the plain CPU (the simulated "other" device), so any
tensor that reaches a collective without an explicit move to the
communication device fails, e.g. mmengine's ``gather`` of a CPU tensor.
"""
import contextlib
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.overrides import TorchFunctionMode

SIM_DEVICE = torch.device('cpu', 1)

COLLECTIVES = ('all_reduce', 'all_gather', 'all_gather_into_tensor', 'gather',
               'broadcast', 'reduce', 'scatter', 'reduce_scatter',
               'reduce_scatter_tensor', 'all_to_all', 'all_to_all_single',
               'send', 'recv', 'isend', 'irecv')


class OnComm(torch.Tensor):
    """A tensor on the simulated communication device."""

    @property
    def device(self):
        return SIM_DEVICE


def _target(func, args, kwargs):
    """The device a call puts its result on, if it names one."""
    if func in (torch.Tensor.cpu, ):
        return torch.device('cpu')
    device = kwargs.get('device')
    if device is None and func is torch.Tensor.to:
        device = next(
            (a for a in args[1:] if isinstance(a, (torch.device, str))), None)
    return None if device is None else torch.device(device)


def _retag(out, on_comm):
    if isinstance(out, torch.Tensor):
        return out.as_subclass(OnComm if on_comm else torch.Tensor)
    if isinstance(out, (list, tuple)):
        return type(out)(_retag(o, on_comm) for o in out)
    return out


class SimulatedAccelerator(TorchFunctionMode):

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = _target(func, args, kwargs)
        if target == SIM_DEVICE and 'device' in kwargs:
            kwargs = dict(kwargs, device='cpu')
        elif target == SIM_DEVICE:
            args = tuple('cpu' if isinstance(a, (torch.device, str)) else a
                         for a in args)
        out = func(*args, **kwargs)
        if target is not None:
            out = _retag(out, target == SIM_DEVICE)
        return out


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)


def _checked(name, collective):

    def wrapper(*args, **kwargs):
        for t in _tensors(list(args) + list(kwargs.values())):
            if not isinstance(t, OnComm):
                raise RuntimeError(
                    f'simulated NCCL: {name} was handed a tensor on '
                    f'{torch.Tensor.device.__get__(t)}, not on the '
                    f'communication device {SIM_DEVICE}')

        def plain(obj):
            if isinstance(obj, torch.Tensor):
                return obj.as_subclass(torch.Tensor)
            if isinstance(obj, list):
                return [plain(o) for o in obj]
            return obj

        # plain tensors, no torch-function dispatch: gloo does the work
        with torch._C.DisableTorchFunction():
            return collective(*[plain(a) for a in args], **{
                k: plain(v)
                for k, v in kwargs.items()
            })

    return wrapper


@contextlib.contextmanager
def simulated_nccl():
    """Patch the comm device and the collectives, as described above."""
    import mmengine.dist.utils as dist_utils
    original = dist_utils.get_comm_device
    patched = []  # (owner, name, old)
    for mod in list(sys.modules.values()):
        if getattr(mod, 'get_comm_device', None) is original:
            patched.append((mod, 'get_comm_device', original))
    for owner in (dist, dist.distributed_c10d):
        for name in COLLECTIVES:
            if hasattr(owner, name):
                patched.append((owner, name, getattr(owner, name)))
    cast = dist_utils.cast_data_device

    def cast_data_device(data, device, out=None):
        # mmengine insists that `out` has the type of `data`: OnComm is a
        # type of its own here, a device elsewhere
        if isinstance(out, torch.Tensor):
            moved = cast(data, device)
            out.copy_(moved)
            return moved
        return cast(data, device, out)

    import mmengine.dist.dist as dist_dist
    replace = dict(
        get_comm_device=lambda group=None: SIM_DEVICE,
        cast_data_device=cast_data_device)
    patched.append((dist_dist, 'cast_data_device', cast))
    for owner, name, old in patched:
        setattr(owner, name, replace.get(name) or _checked(name, old))
    try:
        with SimulatedAccelerator():
            yield
    finally:
        for owner, name, old in patched:
            setattr(owner, name, old)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


TIMEOUT = 300  # seconds for the 2 processes, start-up included


def run_two_ranks(worker, out_dir: Path) -> list:
    """Run ``worker(rank, port, out_dir)`` on 2 processes; fail on a hang.

    Returns:
        list: What each rank saved to ``out_dir / f'{rank}.pth'``.
    """
    ctx = mp.spawn(
        worker, args=(free_port(), str(out_dir)), nprocs=2, join=False)
    deadline = time.monotonic() + TIMEOUT
    while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
            pytest.fail(f'The 2 ranks did not finish in {TIMEOUT} s: a '
                        'collective hangs.')
    return [
        torch.load(out_dir / f'{r}.pth', weights_only=False) for r in (0, 1)
    ]
