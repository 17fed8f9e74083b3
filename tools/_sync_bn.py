"""SyncBN on CPU processes, for the tools that run a config on gloo ranks.

DDP refuses ``nn.SyncBatchNorm`` in a CPU module, so ``tools/rehearse.py``
and ``tools/dev/world_size_check.py`` use :class:`CPUSyncBatchNorm`: the same
arithmetic and collectives on CPU tensors. The leading underscore says the
module is not a tool itself.
"""
import torch
from mmengine.dist import get_world_size
from torch.distributed.nn.functional import \
    all_reduce as differentiable_all_reduce
from torch.nn.modules.batchnorm import _BatchNorm


class CPUSyncBatchNorm(_BatchNorm):
    """SyncBN's arithmetic and collectives on CPU tensors: with batch
    statistics, autograd-aware all-reduces of the per-channel sums and
    count, then of the centred squares, in the forward pass, and of their
    gradients in the backward pass. One process: plain BN."""
    _abbr_ = 'bn'

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f'expected 2D or more input, got {x.dim()}')

    def forward(self, x):
        if get_world_size() < 2 or \
                (not self.training and self.track_running_stats):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        c = x.shape[1]
        shape = [1, c] + [1] * (x.dim() - 2)
        count = x.new_full((1, ), x.numel() / c)
        stats = differentiable_all_reduce(torch.cat([x.sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        # the centred squares in a second pass: E[x^2] - E[x]^2 loses the
        # variance of features far from 0 in float32
        var = differentiable_all_reduce(
            ((x - mean.view(shape))**2).sum(dims)) / n
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: torch.nn.Module) -> int:
    """Make every BN layer of ``module`` a :class:`CPUSyncBatchNorm` in
    place (as ``sync_bn='torch'`` makes them SyncBN on GPUs).

    Returns:
        int: The number of layers converted.
    """
    count = 0
    for m in module.modules():
        if isinstance(m, _BatchNorm) and not isinstance(m, CPUSyncBatchNorm):
            m.__class__ = CPUSyncBatchNorm
            count += 1
    return count
