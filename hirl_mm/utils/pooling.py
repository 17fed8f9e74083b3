import torch
import torch.nn.functional as F


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) feature maps -> (N, C) by global averaging; (N, C) as is."""
    return x.flatten(2).mean(-1) if x.dim() > 2 else x


def pooled_embedding(x: torch.Tensor) -> torch.Tensor:
    """Globally pooled, float, L2-normalised features, (N, C)."""
    return F.normalize(global_pool(x).float(), dim=1)
