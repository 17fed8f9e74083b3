from typing import Iterable

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPERS


@torch.no_grad()
def clip_grad_norm_per_parameter_(parameters: Iterable[torch.Tensor],
                                  max_norm: float,
                                  eps: float = 1e-6) -> torch.Tensor:
    """Clip the gradient of every parameter to an L2 norm of ``max_norm``,
    each on its own.

    DINO's and iBOT's rule (facebookresearch/dino, ``utils.py``,
    ``clip_gradients``, lines 132-141; bytedance/ibot, ``utils.py``, lines
    154-163): a gradient of norm n > ``max_norm`` is scaled by
    ``max_norm / (n + eps)``; the others are left as they are. Unlike
    :func:`torch.nn.utils.clip_grad_norm_`, a large gradient of one
    parameter does not shrink the gradients of the others.

    Args:
        parameters (Iterable[Tensor]): Parameters whose ``grad`` to clip.
        max_norm (float): Largest gradient norm of a parameter.
        eps (float): Added to the norm in the scale. Defaults to 1e-6.

    Returns:
        Tensor: The total L2 norm of the gradients before clipping (what
        :func:`torch.nn.utils.clip_grad_norm_` returns, for the log).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.)
    norms = torch.stack([g.detach().float().norm(2) for g in grads])
    # a factor of exactly 1 where the norm is within the limit (no host sync)
    scales = (max_norm / (norms + eps)).clamp(max=1.)
    for g, scale in zip(grads, scales):
        g.mul_(scale.to(g.dtype))
    return norms.norm(2)


class _PerParameterClipMixin:
    """Turns ``clip_grad=dict(max_norm=...)`` into per-parameter clipping."""

    def __init__(self, *args, clip_grad: dict, **kwargs) -> None:
        clip_grad = dict(clip_grad or {})
        if set(clip_grad) - {'type', 'max_norm'} or \
                clip_grad.get('type', 'norm') != 'norm' or \
                clip_grad.get('max_norm', 0) <= 0:
            raise ValueError(
                f'{type(self).__name__} needs clip_grad=dict(max_norm=M) '
                f'with M > 0 (each parameter\'s gradient norm), got '
                f'{clip_grad}.')
        super().__init__(*args, clip_grad=clip_grad, **kwargs)
        self.clip_func = clip_grad_norm_per_parameter_


@OPTIM_WRAPPERS.register_module()
class PerParameterClipOptimWrapper(_PerParameterClipMixin, OptimWrapper):
    """mmengine's ``OptimWrapper`` with DINO's gradient clipping: each
    parameter's gradient norm is clipped to ``clip_grad['max_norm']`` on
    its own (:func:`clip_grad_norm_per_parameter_`), not the global norm.
    ``train/grad_norm`` still logs the global norm before clipping.

    Args:
        optimizer (Optimizer): The optimizer.
        clip_grad (dict): ``dict(max_norm=M)``.
        **kwargs: ``OptimWrapper``'s other arguments.

    Examples:
        >>> optim_wrapper = dict(
        >>>     type='PerParameterClipOptimWrapper',
        >>>     optimizer=dict(type='AdamW', lr=1e-3),
        >>>     clip_grad=dict(max_norm=0.3))
    """


@OPTIM_WRAPPERS.register_module()
class PerParameterClipAmpOptimWrapper(_PerParameterClipMixin, AmpOptimWrapper):
    """:class:`PerParameterClipOptimWrapper` for mixed precision: mmengine's
    ``AmpOptimWrapper`` unscales the gradients before they are clipped, as
    DINO does (``fp16_scaler.unscale_`` then ``clip_gradients``)."""
