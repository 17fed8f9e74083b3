import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` run on machines without a GPU.

    mmengine's launcher binds each rank to a CUDA device. Without one, start
    the gloo process group here (the Runner then keeps it) and wrap the
    model in DDP with ``device_ids=None`` as CPU modules require.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False)
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


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
