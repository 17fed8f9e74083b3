from .backbone_loading import (MIN_LOADED, MIN_LOADED_KEY, check_load_from,
                               check_pretrained_inits, loaded_share)
from .checkpoint import (check_checkpoint, mmengine_safe_globals,
                         register_safe_globals)
from .dist import broadcast_buffers, finish_distributed, setup_cpu_distributed
from .epoch_length import check_epoch_length
from .pooling import global_pool, pooled_embedding
from .pretrained import (drop_pretrained_inits, pretrained_cfg_options,
                         pretrained_init_paths)

__all__ = [
    'MIN_LOADED', 'MIN_LOADED_KEY', 'broadcast_buffers', 'check_checkpoint',
    'check_epoch_length', 'check_load_from', 'check_pretrained_inits',
    'drop_pretrained_inits', 'global_pool', 'loaded_share',
    'mmengine_safe_globals', 'pooled_embedding', 'pretrained_cfg_options',
    'pretrained_init_paths', 'register_safe_globals', 'setup_cpu_distributed',
    'finish_distributed'
]
