from .checkpoint import (check_checkpoint, mmengine_safe_globals,
                         register_safe_globals)
from .dist import broadcast_buffers, finish_distributed, setup_cpu_distributed
from .pooling import global_pool, pooled_embedding
from .pretrained import pretrained_cfg_options, pretrained_init_paths

__all__ = [
    'broadcast_buffers', 'check_checkpoint', 'global_pool',
    'mmengine_safe_globals', 'pooled_embedding', 'pretrained_cfg_options',
    'pretrained_init_paths', 'register_safe_globals', 'setup_cpu_distributed',
    'finish_distributed'
]
