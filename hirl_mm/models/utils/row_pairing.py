"""Which sample of a multi-view batch each row of a projection belongs to.

Self-supervised algorithms stack their views in their own order before the
backbone (MMPretrain's SimCLR interleaves them, SwAV concatenates them view
by view, MoCo shuffles the key batch), so a wrapper that reads their
projections cannot assume the order. These helpers establish it instead:
a row is traced back to the images that reached the backbone (by storage:
a slice or chunk of a backbone output shares its storage) and those images
are matched to the input views by exact equality.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch

# Integer dtypes of each element width, to hash the exact bits of any row.
_INT_OF_WIDTH = {
    1: torch.uint8,
    2: torch.int16,
    4: torch.int32,
    8: torch.int64
}
_WEIGHTS: Dict[Tuple[int, torch.device], torch.Tensor] = {}


def row_hashes(x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """A 64-bit hash of each row's exact bits, (N, ...) -> (N, ).

    A random-weighted sum of the bits in wrapping int64 arithmetic: exact and
    independent of the reduction order, so equal rows always hash equally,
    whatever batch they sit in.
    """
    x = x.detach().flatten(1)
    if x.is_floating_point():
        x = x.view(_INT_OF_WIDTH[x.element_size()])
    key = (x.shape[1], x.device)
    if key not in _WEIGHTS:
        g = torch.Generator().manual_seed(x.shape[1])
        _WEIGHTS[key] = (torch.randint(
            -2**62, 2**62, (x.shape[1], ), generator=g) | 1).to(x.device)
    weights = _WEIGHTS[key]
    if not len(x):
        return weights.new_zeros(0)
    return torch.cat([(c.long() * weights).sum(1) for c in x.split(chunk)])


def tensors_in(obj) -> List[torch.Tensor]:
    """The tensors of a (nested) list / tuple, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in tensors_in(item)]
    return []


def row_offset(t: torch.Tensor, src: torch.Tensor) -> Optional[int]:
    """The first row of ``src`` that ``t`` starts at when ``t`` is a block of
    whole rows of ``src`` (a slice, chunk or ``src`` itself), else None."""
    if t.dim() == 0 or t.dim() != src.dim() or t.shape[1:] != src.shape[1:] \
            or t.untyped_storage().data_ptr() != \
            src.untyped_storage().data_ptr() or t.stride() != src.stride():
        return None
    delta, row = t.storage_offset() - src.storage_offset(), src.stride(0)
    if row <= 0 or delta < 0 or delta % row \
            or delta // row + len(t) > len(src):
        return None
    return delta // row


def match_views(segments: Sequence[torch.Tensor],
                views: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pair the rows of some image batches with the samples' views.

    Args:
        segments (Sequence[Tensor]): Image batches whose rows, concatenated,
            are the rows to pair (e.g. the inputs of successive backbone
            calls); their shapes may differ (multi-crop).
        views (Sequence[Tensor]): V views, each (B, ...): ``views[v][b]`` is
            view v of sample b.

    Returns:
        Tensor: (V, B) long, the index of a row equal to ``views[v][b]`` (the
        first one), -1 where no row is.
    """
    index = torch.full((len(views), len(views[0])),
                       -1,
                       dtype=torch.long,
                       device=views[0].device)
    view_hashes = None  # hashed on first need
    start = 0
    for seg in segments:  # an earlier segment's row wins
        # rows of a view itself (SimSiam, MoCo's query) are paired by
        # storage, without hashing
        v, offset = next(
            ((v, o)
             for v, o in enumerate(row_offset(seg, view)
                                   for view in views) if o is not None),
            (None, None))
        if v is not None:
            block = index[v, offset:offset + len(seg)]
            free = block < 0
            block[free] = torch.arange(
                start, start + len(seg), device=index.device)[free]
            start += len(seg)
            continue
        seg_hash = row_hashes(seg).to(index.device)
        if view_hashes is None:
            view_hashes = [row_hashes(view) for view in views]
        for v, (view, view_hash) in enumerate(zip(views, view_hashes)):
            if seg.shape[1:] != view.shape[1:]:
                continue
            eq = view_hash[:, None] == seg_hash[None]  # B x n
            todo = (eq.any(1) & (index[v] < 0)).nonzero()[:, 0]
            if not len(todo):
                continue
            first = eq[todo].int().argmax(1)
            # the hash proposes, exact equality decides
            same = (seg[first].to(view.device) == view[todo]).flatten(1).all(1)
            index[v, todo[same]] = start + first[same]
        start += len(seg)
    return index
