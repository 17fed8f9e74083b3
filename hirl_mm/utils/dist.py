import datetime

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.dist import broadcast, get_world_size
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on machines without a GPU.

    mmengine's launcher binds each rank to a CUDA device. Without one, start
    the gloo process group here (the Runner then keeps it) and wrap the
    model in DDP with ``device_ids=None`` as CPU modules require. The
    wrapper is otherwise the one the GPU launcher builds: the config's
    ``model_wrapper_cfg`` as it is, or mmengine's default
    (``broadcast_buffers=False``, the config's ``find_unused_parameters``).
    The group's timeout is the config's ``env_cfg.dist_cfg.timeout``.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    if not torch_dist.is_initialized():
        timeout = (cfg.get('env_cfg') or {}).get('dist_cfg', {}).get('timeout')
        kwargs = {} if timeout is None else dict(
            timeout=datetime.timedelta(seconds=timeout))
        torch_dist.init_process_group(backend='gloo', **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


@torch.no_grad()
def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Give every rank ``src``'s buffers of ``module`` (a collective).

    What DDP's ``broadcast_buffers=True`` does before every forward, once:
    e.g. before the training set is re-embedded in eval mode, so every
    rank's shard goes through the same normalisation statistics. Buffers
    DDP is told to ignore (``_ddp_params_and_buffers_to_ignore``, e.g. a
    prototype tree that every rank already holds) are skipped. One
    broadcast per dtype, on each buffer's own device (the communication
    device under NCCL).
    """
    if get_world_size() < 2:
        return
    ignore = set(getattr(module, '_ddp_params_and_buffers_to_ignore', ()))
    groups = {}
    for name, buf in module.named_buffers():
        if name not in ignore and buf.numel():
            groups.setdefault((buf.dtype, buf.device), []).append(buf)
    for bufs in groups.values():
        flat = _flatten_dense_tensors(bufs)
        broadcast(flat, src)
        for buf, value in zip(bufs, _unflatten_dense_tensors(flat, bufs)):
            buf.copy_(value)


def finish_distributed() -> None:
    """Destroy the default process group at the end of a run, if any.

    mmengine's Runner leaves it alive; a process that exits with it can
    abort in the C++ teardown of its threads ("terminate called without an
    active exception", seen in this project's 2-process gloo tests) and
    torch warns that NCCL's resources leaked. Called by ``tools/train.py``
    and ``tools/test.py`` after the run.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
