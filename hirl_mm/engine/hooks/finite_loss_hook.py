import math

import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class FiniteLossCheckHook(Hook):
    """Stop training at the first non-finite loss term, naming the step and
    every loss term.

    It runs before the checkpoint hook, so no checkpoint is written from the
    broken weights and the last good one stays in the work dir.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        terms = {
            k: float(v.detach()) if torch.is_tensor(v) else float(v)
            for k, v in (outputs or {}).items() if k.startswith('loss')
        }
        if all(math.isfinite(v) for v in terms.values()):
            return
        raise FloatingPointError(
            f'Non-finite loss at epoch {runner.epoch + 1}, iteration '
            f'{runner.iter + 1} (batch {batch_idx + 1} of the epoch): ' +
            ', '.join(f'{k}={v}' for k, v in terms.items()) +
            f'. Training stopped; the checkpoints in {runner.work_dir} are '
            'kept (resume with --resume).')
