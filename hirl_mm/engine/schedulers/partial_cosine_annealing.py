from mmengine.optim.scheduler import CosineAnnealingParamScheduler
from mmpretrain.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class PartialCosineAnnealingParamScheduler(CosineAnnealingParamScheduler):
    """mmengine's ``CosineAnnealingParamScheduler`` for the param groups
    that do not hold their value fixed.

    A param group with ``fixed_<param_name>=True`` keeps its value; every
    other group is annealed as ``CosineAnnealingParamScheduler`` does it,
    each from its own initial value (``eta_min_ratio`` is relative to it).
    The optimizer constructor puts the flag into the groups of the matching
    parameters through ``paramwise_cfg.custom_keys``, the way MMPretrain's
    ``LARS`` reads ``lars_exclude``.

    HIRL-DINO and HIRL-iBOT need it: the reference gives the level MLPs a
    param group of their own with AdamW's default weight decay, 0.01, which
    its weight-decay schedule never moves (hirl-team/HIRL,
    ``hirl/runners/pretrain/hirl.py`` lines 62-66,
    ``hirl/runners/pretrain/dino.py`` lines 192-195).

    Args:
        *args: ``CosineAnnealingParamScheduler``'s arguments.
        **kwargs: ``CosineAnnealingParamScheduler``'s keyword arguments.

    Examples:
        >>> optim_wrapper = dict(
        >>>     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.04),
        >>>     paramwise_cfg=dict(custom_keys={
        >>>         'hirl_neck': dict(weight_decay=0.01,
        >>>                           fixed_weight_decay=True)}))
        >>> param_scheduler = dict(
        >>>     type='PartialCosineAnnealingParamScheduler',
        >>>     param_name='weight_decay', eta_min_ratio=10., T_max=100)
    """

    def _get_value(self) -> list:
        fixed = f'fixed_{self.param_name}'
        return [
            group[self.param_name] if group.get(fixed) else value
            for group, value in zip(self.optimizer.param_groups,
                                    super()._get_value())
        ]
