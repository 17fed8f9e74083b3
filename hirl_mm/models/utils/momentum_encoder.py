import torch.nn as nn
from mmengine.model import BaseAveragedModel


class _OwnBuffers:
    """Averages the parameters only; the buffers are left to the averaged
    model's own forward passes."""

    def update_parameters(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, p_avg in self.avg_parameters.items():
            src = params[name].detach().to(p_avg.device)
            if self.steps == 0:
                p_avg.data.copy_(src)
            elif self.steps % self.interval == 0 and \
                    p_avg.dtype.is_floating_point:
                self.avg_func(p_avg.data, src, self.steps)
        self.steps += 1


def keep_own_buffers(model: nn.Module) -> None:
    """Let every momentum encoder in ``model`` keep its own BN statistics.

    mmengine's averaged models with ``update_buffers=False`` (MMPretrain's
    MoCo, MoCo v3, BYOL and ``CosineEMA``) copy the online network's
    buffers into the average at every update, so the momentum encoder's
    running statistics are the online network's, gathered on the query
    crops (and, with multi-crop, mostly on the small ones). The references
    average the parameters only (facebookresearch/moco ``builder.py``
    ``_momentum_update_key_encoder``, gyfastas/HCSC and hirl-team/HIRL
    likewise): ``encoder_k`` keeps statistics of its own key crops, the
    ones its eval-mode features (the prototypes' features) are normalised
    with. A training-mode forward pass normalises with the batch either
    way, so the losses do not change.

    Args:
        model (nn.Module): Searched for ``BaseAveragedModel`` modules with
            ``update_buffers=False``; each keeps its class's averaging rule.
    """
    for module in model.modules():
        cls = type(module)
        if not isinstance(module, BaseAveragedModel) or \
                module.update_buffers or issubclass(cls, _OwnBuffers):
            continue
        name = f'OwnBuffers{cls.__name__}'
        if name not in globals():  # a module-level class pickles
            globals()[name] = type(name, (_OwnBuffers, cls),
                                   dict(__module__=__name__))
        module.__class__ = globals()[name]
