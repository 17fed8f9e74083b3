"""Capture a wrapped algorithm's projection during its own loss, pair its
rows with the samples and pick the rows the memory bank records.

A wrapper such as :class:`~hirl_mm.models.HIRL` reads the projection that
its base algorithm computes anyway (the backbone never runs twice) and
must know which sample each row holds; the rows are traced to the images
that reached ``backbone`` and those are matched to the input views
(:mod:`.row_pairing`).
"""
from functools import partial
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.dist import (all_gather, all_reduce, get_comm_device,
                           get_world_size)

from hirl_mm.utils import global_pool
from .row_pairing import match_views, row_hashes, row_offset, tensors_in

BRANCH_INPUTS = ('images', 'projection')


def first_tensor(out) -> torch.Tensor:
    """The first tensor of a (nested) list / tuple, or ``out`` itself."""
    while isinstance(out, (list, tuple)):
        out = out[0]
    return out


def find_module(root: nn.Module, path: str, key: str) -> nn.Module:
    """The sub-module at the dotted ``path`` inside ``root``.

    Args:
        root (nn.Module): The base algorithm.
        path (str): Dotted path, e.g. ``'head.predictor'``.
        key (str): The argument that named ``path``, for the error.

    Returns:
        nn.Module: The sub-module.
    """
    module = root
    for name in path.split('.'):
        if not hasattr(module, name):
            raise ValueError(
                f'`{key}={path!r}` names no sub-module of the base '
                f'algorithm {type(root).__name__}; its children are '
                f'{[n for n, _ in root.named_children()]}.')
        module = getattr(module, name)
    return module


def paired_view(index: torch.Tensor,
                what: str,
                after: int = -1) -> Tuple[int, torch.Tensor]:
    """The first view after ``after`` with a row for every sample, and those
    rows in sample order.

    Args:
        index (torch.Tensor): ``(V, B)`` row of view v of sample b, -1 where
            none (:meth:`ProjectionCapture.pair`).
        what (str): The rows' name, for the error.
        after (int): Only views after this one. Defaults to -1.

    Returns:
        Tuple[int, torch.Tensor]: The view and its ``(B, )`` rows.
    """
    full = (index >= 0).all(1).nonzero()[:, 0]
    full = full[full > after]
    if not len(full):
        raise RuntimeError(
            f'HIRL cannot pair the rows of {what} with the samples: no '
            f'input view after view {after} has all of its '
            f'{index.shape[1]} images among the images that reached the '
            f'backbone (images found per view: '
            f'{(index >= 0).sum(1).tolist()}). Inputs mixed or changed '
            'before the backbone (e.g. MixMIM, CutMix) are not '
            'supported.')
    view = int(full[0])
    return view, index[view]


def predicted_rows(proj_out: torch.Tensor, calls: list,
                   every: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """A predictor's outputs aligned with the rows of the projection
    ``proj_out``, and which rows it predicted.

    Args:
        proj_out (torch.Tensor): ``(R, D)`` projection.
        calls (list): ``(inputs, output)`` of the predictor's calls.
        every (bool): Use every call, else the first.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: ``(R, D')`` predictions (zero
        where none) and ``(R, )`` bool.
    """
    out = proj_out.new_zeros(len(proj_out), 0)
    predicted = torch.zeros(
        len(proj_out), dtype=torch.bool, device=proj_out.device)
    for (pred_in, *_), pred_out in calls if every else calls[:1]:
        offset = row_offset(pred_in, proj_out)
        if offset is None or offset + len(pred_out) > len(proj_out):
            continue
        pred = global_pool(pred_out)
        if not out.shape[1]:
            out = pred.new_zeros(len(proj_out), pred.shape[1])
        out[offset:offset + len(pred)] = pred
        predicted[offset:offset + len(pred)] = True
    return out, predicted


def matched_rows(
        feats: torch.Tensor,
        images: torch.Tensor,
        views: List[torch.Tensor],
        sample_idx: torch.Tensor,
        every: bool,
        branch: str = 'the prototype branch'
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows of a branch that maps images (e.g. a momentum encoder) and the
    samples their images are views of.

    Under several processes the images are paired against every rank's
    views (MoCo's batch shuffle sends key images to other ranks): an
    all-gather of O(B) hashes, on the communication device, never of
    images or features.

    Args:
        feats (torch.Tensor): ``(N, D)`` the branch's rows.
        images (torch.Tensor): ``(N, ...)`` the images it mapped.
        views (List[torch.Tensor]): V views, each ``(B, ...)``.
        sample_idx (torch.Tensor): ``(B, )`` the samples' ``sample_idx``.
        every (bool): Rows of every global view (the views of the first
            view's shape), else each sample's lowest view only.
        branch (str): The branch's name, for the error.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: The matched rows and their
        ``sample_idx``.
    """
    V, B = len(views), len(views[0])
    device = feats.device
    world_size = get_world_size()
    if world_size == 1:  # rows of a view itself: no hashing
        offset = next((o for o in (row_offset(images, v)
                                   for v in views) if o is not None), None)
        if offset is not None:
            return feats, sample_idx[offset:offset + len(images)].to(device)
    full = torch.tensor([v.shape == views[0].shape for v in views],
                        device=device)
    table = torch.stack([
        torch.stack([row_hashes(v).to(device) for v in views]),
        sample_idx.to(device).expand(V, B),
        torch.arange(V, device=device)[:, None].expand(V, B),
        full[:, None].expand(V, B).long()
    ]).flatten(1)  # 4 x VB: hash, sample, view, valid
    if world_size > 1:
        comm = get_comm_device()
        width = torch.tensor([table.shape[1]], device=comm)
        all_reduce(width, op='max')  # the last batches may differ
        padded = table.new_zeros(4, int(width)).to(comm)
        padded[:, :table.shape[1]] = table.to(comm)
        table = torch.cat(all_gather(padded), dim=1).to(device)
    table = table[:, table[2].argsort(stable=True)]  # lowest view first
    eq = (row_hashes(images).to(device)[:, None] == table[0][None]) \
        & table[3].bool()[None]
    found = eq.any(1).nonzero()[:, 0]
    if not len(found) and world_size == 1:
        raise RuntimeError(
            f'HIRL cannot record prototype features: no image that '
            f'reached `{branch}` is one of the input views.')
    col = eq[found].int().argmax(1)
    ids, view = table[1, col], table[2, col]
    if not every and len(ids):  # each sample's lowest view only
        lowest = view.new_full((int(ids.max()) + 1, ),
                               V).scatter_reduce(0, ids, view, 'amin')
        keep = view == lowest[ids]
        found, ids = found[keep], ids[keep]
    return feats[found], ids


class ProjectionCapture:
    """Forward hooks on a wrapped algorithm for the span of one of its loss
    calls (a context manager).

    It keeps the images of ``backbone``'s calls with their outputs (the
    calls before the projection's first, or all of them), the inputs and
    output of the projection module's first call (or of every call) and,
    optionally, of a prototype-branch module's. Afterwards :meth:`pair`
    pairs a projection call's rows with the samples' views and
    :meth:`bank_rows` picks the prototype-branch rows for the memory bank.

    Args:
        base (nn.Module): The wrapped algorithm, with a ``backbone``.
        proj_module (str): Dotted path, inside ``base``, of the module whose
            output is the projection.
        branch (str, optional): Dotted path, inside ``base``, of the
            prototype-branch module to capture too; None when the
            projection itself is what the bank records. Defaults to None.
        branch_input (str): What ``branch`` is called on: ``'images'`` (a
            momentum encoder: its rows are matched to the views by their
            images) or ``'projection'`` (a predictor: its rows are aligned
            with the projection's). Defaults to 'images'.
        every (bool): Capture every call instead of the first, to record
            every view the step projects. Defaults to False.
    """

    def __init__(self,
                 base: nn.Module,
                 proj_module: str,
                 branch: Optional[str] = None,
                 branch_input: str = 'images',
                 every: bool = False) -> None:
        if branch_input not in BRANCH_INPUTS:
            raise ValueError(f'branch_input must be one of {BRANCH_INPUTS}, '
                             f'got {branch_input!r}.')
        self.base = base
        self.proj_module = proj_module
        self.branch = branch
        self.branch_input = branch_input
        self.every = every
        self.calls: list = []  # (images, backbone output tensors)
        self.proj: list = []  # (input tensors, output)
        self.branch_calls: list = []  # (input tensors, output)
        self._handles: list = []

    def __enter__(self) -> 'ProjectionCapture':
        every, calls, proj = self.every, self.calls, self.proj

        def on_backbone(module, args, kwargs, out):
            if every or not proj:  # the calls the projections may hold
                images = args[0] if args else next(iter(kwargs.values()))
                calls.append((images, tensors_in(out)))

        def capture(store):
            return lambda m, args, out: store.append(
                (tensors_in(args), first_tensor(out))) \
                if every or not store else None

        # found first: a bad path leaves no hook behind
        modules = [
            self.base.backbone,
            find_module(self.base, self.proj_module, 'proj_module')
        ]
        if self.branch is not None:
            modules.append(find_module(self.base, self.branch, 'proto_branch'))
        self._handles = [
            modules[0].register_forward_hook(on_backbone, with_kwargs=True),
            modules[1].register_forward_hook(capture(proj))
        ] + [
            m.register_forward_hook(capture(self.branch_calls))
            for m in modules[2:]
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def projection(self) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Inputs and output of the projection module's first call."""
        if not self.proj:
            raise RuntimeError(
                f'HIRL found no online projection: `proj_module='
                f'{self.proj_module!r}` was not called by '
                f'{type(self.base).__name__}.loss(). Set `proj_module` to '
                'the module whose output the base loss uses.')
        return self.proj[0]

    def pair(self, call: int, views: List[torch.Tensor]) -> torch.Tensor:
        """Pair the rows of a projection call with the samples' views.

        Its inputs are traced to backbone calls, their images to the views.

        Args:
            call (int): The captured projection call.
            views (List[torch.Tensor]): V views, each ``(B, ...)``.

        Returns:
            torch.Tensor: ``(V, B)`` row of the call's output holding view
            v of sample b, -1 where none.
        """
        proj_in, proj_out = self.proj[call]
        segments = []
        for t in proj_in:
            for images, outs in self.calls:
                offset = next((o for o in map(partial(row_offset, t), outs)
                               if o is not None), None)
                if offset is not None:
                    segments.append(images[offset:offset + len(t)])
                    break
            else:
                raise RuntimeError(
                    f'HIRL cannot pair the online projection with the '
                    f'samples: an input of `{self.proj_module}` '
                    f'({tuple(t.shape)}) is not made of whole rows of an '
                    f'output of `backbone` in {type(self.base).__name__}.'
                    'loss() (computed from it in between?).')
        if sum(map(len, segments)) != len(proj_out):
            raise RuntimeError(
                f'HIRL cannot pair the online projection with the samples: '
                f'`{self.proj_module}` output {len(proj_out)} rows from '
                f'inputs of {[len(s) for s in segments]} rows.')
        return match_views(segments, views)

    def bank_rows(
            self, index: torch.Tensor, views: List[torch.Tensor],
            sample_idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """This step's prototype-branch rows for the memory bank, once each:
        of the paired view of the first projection call, or with ``every``
        of every view of the first view's shape that the step projects.

        Args:
            index (torch.Tensor): ``(V, B)`` :meth:`pair` of the first call.
            views (List[torch.Tensor]): V views, each ``(B, ...)``.
            sample_idx (torch.Tensor): ``(B, )`` the samples' ``sample_idx``.

        Returns:
            Tuple[torch.Tensor, torch.Tensor]: The detached rows and their
            ``sample_idx``.
        """
        every = self.every
        # (V, B) rows of each projection call, paired with the views
        indices = [index] + [
            self.pair(call, views) for call in range(1, len(self.proj))
        ]
        if not every:  # the paired view's rows of the first call
            view = int((index >= 0).all(1).nonzero()[0, 0])
            keep = torch.zeros_like(index, dtype=torch.bool)
            keep[view] = True
            indices = [index.where(keep, -1)]
        else:  # global views only: multi-crop's small crops are not images
            full = torch.tensor([v.shape == views[0].shape for v in views],
                                device=index.device)
            indices = [i.where(full[:, None], -1) for i in indices]
        feats, ids = [], []
        if self.branch is None or self.branch_input == 'projection':
            for (_, c_out), rows in zip(self.proj, indices):
                outs = global_pool(c_out)
                found = rows >= 0  # V x B
                if self.branch is not None:
                    outs, predicted = predicted_rows(c_out, self.branch_calls,
                                                     every)
                    if not predicted[rows[found]].all():
                        raise RuntimeError(
                            'HIRL cannot record prototype features: the '
                            f'calls of `{self.branch}` do not predict from '
                            'the rows of the captured online projection.')
                feats.append(outs[rows[found]])
                ids.append(sample_idx.expand_as(rows)[found])
        else:
            if not self.branch_calls:
                raise RuntimeError(f'HIRL cannot record prototype features: '
                                   f'`{self.branch}` was not called by '
                                   f'{type(self.base).__name__}.loss().')
            for branch_in, branch_out in self.branch_calls:
                f, i = matched_rows(
                    global_pool(branch_out), branch_in[0], views, sample_idx,
                    every, self.branch)
                feats.append(f)
                ids.append(i)
        return torch.cat(feats).detach(), torch.cat(ids).to(feats[0].device)
