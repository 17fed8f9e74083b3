from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.dist import (all_gather, all_reduce, get_comm_device, get_rank,
                           get_world_size)
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.models.necks import SwAVNeck
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.nn.modules.batchnorm import _BatchNorm

from hirl_mm.utils import global_pool, pooled_embedding
from ..utils import HierarchicalPrototypeMixin, keep_own_buffers
from ..utils.row_pairing import match_views, row_hashes, row_offset, tensors_in

# Sub-modules of common MMPretrain algorithms that hold the momentum /
# teacher branch, i.e. ``Sequential(backbone, neck)`` averaged copies.
MOMENTUM_BRANCHES = ('encoder_k', 'momentum_encoder', 'target_net', 'teacher')
# Prototype spaces of the online branch (``proto_branch`` values).
ONLINE_BRANCHES = ('online', 'online_batch_stats', 'predictor')
# What each online ``proto_branch`` projects with, for the build log.
BRANCH_SPACES = dict(
    online='`neck` after `backbone`, running statistics',
    online_batch_stats='`neck` after `backbone`, batch statistics',
    predictor='`head.predictor` of the online projection')
# Necks that take a list of backbone outputs, one per crop resolution.
MULTI_RESOLUTION_NECKS = (SwAVNeck, )


def _first_tensor(out) -> torch.Tensor:
    while isinstance(out, (list, tuple)):
        out = out[0]
    return out


def _across_ranks(norm: nn.Module) -> bool:
    """Whether ``norm`` normalises over the batches of several ranks."""
    return isinstance(norm, nn.SyncBatchNorm) and \
        get_world_size(norm.process_group) > 1


@contextmanager
def batch_statistics(module: nn.Module, batch_size: int):
    """Normalise by the batch's statistics in the norm layers of ``module``
    that have them, leaving their running statistics untouched.

    A BN layer normalises over this rank's batch of ``batch_size`` images:
    one image has no statistics (a single value per channel), so it keeps
    the running ones. A SyncBN layer under several ranks normalises over
    all ranks' batches together and all-gathers their statistics in every
    forward pass (a collective): it takes the batch's statistics whatever
    this rank's batch size, so that every rank makes the same calls; the
    batch then holds an image per rank at least, as long as every rank
    passes one (see :func:`~hirl_mm.engine.extract_feature_shard`).

    Args:
        module (nn.Module): The module whose norm layers switch.
        batch_size (int): Images in this rank's batch.
    """
    norms = [
        m for m in module.modules()
        if isinstance(m, _BatchNorm) and (batch_size > 1 or _across_ranks(m))
    ]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(norms, saved):
            m.training, m.track_running_stats = training, track


@MODELS.register_module()
class HIRL(HierarchicalPrototypeMixin, BaseModel):
    """HIRL: hierarchical representation learning on top of any SSL method.

    The base algorithm trains as usual and learns the finest semantics; its
    online projection (captured from ``proj_module``'s first call in a step,
    so the backbone never runs twice) goes through :class:`HIRLNeck` to one
    embedding per prototype level and :class:`SPDHead` discriminates the
    image's own root-to-leaf path of prototypes from sampled ones. The
    prototypes are built by :class:`HierarchicalPrototypeHook` through the
    :class:`HierarchicalPrototypeMixin` interface; before the first
    clustering only the base losses are returned.

    Which sample each projection row belongs to is established, not
    assumed (algorithms stack views their own way: SimCLR interleaves
    them, SwAV concatenates them): the rows are traced to the images that
    reached ``backbone`` and those are matched to the input views
    (``inputs[v][b]``) exactly (:mod:`..utils.row_pairing`). SPD embeds the
    rows of the first view that has all its images among them, in sample
    order; a batch where no view can be paired (images mixed or changed
    before the backbone) raises an error.

    Checkpoints keep the base algorithm's key names (``backbone.*``,
    ``neck.*``, ...), so MMPretrain/mmdet/mmseg configs load them with
    ``prefix='backbone.'`` and a plain base checkpoint loads into HIRL.

    Args:
        base (dict): Config of any MMPretrain self-supervised algorithm.
        neck (dict): Config of the level MLPs (:class:`HIRLNeck`).
            ``num_levels`` is filled in from ``num_clusters``.
        head (dict): Config of the SPD head (:class:`SPDHead`).
        num_clusters (Sequence[int]): Prototypes per level, finest first.
        loss_weight (float): Weight of ``loss_spd``. Defaults to 1.0.
        proj_module (str): Dotted path, inside ``base``, of the module whose
            first output in a training step is the online projection.
            Defaults to 'neck'.
        proto_branch (str, optional): The space the prototypes live in:
            'online' (``neck(backbone(x))``, the neck as the model's mode
            has it: running statistics during extraction),
            'online_batch_stats' (the same, the neck's norm layers using
            the extraction batch's statistics), 'predictor' (then
            ``head.predictor``, as SimSiam / BYOL have), or the dotted path,
            inside ``base``, of a module mapping images to projections
            (e.g. 'momentum_encoder'). Defaults to None: the first of
            'encoder_k', 'momentum_encoder', 'target_net', 'teacher' that
            ``base`` has, else 'online'.
        reassign_each_iter (bool): Refresh the positive paths every
            iteration from the batch (nearest level-0 prototype, then its
            ancestors) instead of the hook's per-epoch assignments, as
            HIRL-SwAV does: from the projection of the view after the one
            SPD embeds (swapped, as the reference). The prototypes must be
            built from the online projection (``proto_branch`` 'online' or
            'online_batch_stats'). Defaults to False.
        data_preprocessor (dict, optional): Passed to ``base``.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 base: dict,
                 neck: dict,
                 head: dict,
                 num_clusters: Sequence[int],
                 loss_weight: float = 1.0,
                 proj_module: str = 'neck',
                 proto_branch: Optional[str] = None,
                 reassign_each_iter: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        base = dict(base)
        if data_preprocessor is not None:
            base.setdefault('data_preprocessor', data_preprocessor)
        try:
            base = MODELS.build(base)
        except KeyError as e:
            raise KeyError(f'HIRL cannot build its `base` algorithm '
                           f'{base.get("type")!r}: {e}') from e
        super().__init__(
            data_preprocessor=base.data_preprocessor, init_cfg=init_cfg)
        self.base = base
        # the momentum encoder normalises the prototypes' features with its
        # own statistics, as the references' encoder_k
        keep_own_buffers(base)
        self.loss_weight = loss_weight
        self.proj_module = proj_module
        self._find(proj_module, 'proj_module')
        chosen = proto_branch is None
        if chosen:
            proto_branch = next(
                (b for b in MOMENTUM_BRANCHES if hasattr(base, b)), 'online')
        if proto_branch == 'predictor' and not hasattr(
                getattr(base, 'head', None), 'predictor'):
            raise ValueError(
                "`proto_branch='predictor'` needs a predictor in the base "
                f'head (`head.predictor`, as SimSiam and BYOL have); '
                f'{type(base).__name__} has none.')
        elif proto_branch not in ONLINE_BRANCHES:
            self._find(proto_branch, 'proto_branch')
        self.proto_branch = proto_branch
        if reassign_each_iter and proto_branch not in ONLINE_BRANCHES[:2]:
            raise ValueError(
                '`reassign_each_iter=True` assigns the online projection to '
                'the prototypes, so they must be built from it: set '
                "`proto_branch='online'` or 'online_batch_stats' (got "
                f'{proto_branch!r}).')
        self.reassign_each_iter = reassign_each_iter
        if get_rank() == 0:
            space = BRANCH_SPACES.get(proto_branch,
                                      f'`{proto_branch}` of the base')
            print_log(
                f'HIRL on {type(base).__name__}: the level MLPs embed the '
                f'output of `{proj_module}`; the prototypes are built from '
                f'proto_branch={proto_branch!r} ({space})'
                f'{", chosen for this base" if chosen else ""}.',
                logger='current')

        self.init_prototypes(num_clusters)
        self.hirl_neck = MODELS.build(
            dict(neck, num_levels=self.prototypes.num_levels))
        self.hirl_head = MODELS.build(head)

        # Checkpoints use the base algorithm's own key names.
        self._register_state_dict_hook(self._strip_base_prefix)
        self._register_load_state_dict_pre_hook(self._add_base_prefix)

    @property
    def backbone(self) -> nn.Module:
        return self.base.backbone

    @property
    def head(self) -> nn.Module:
        """The base head, for upstream hooks (e.g. ``SwAVHook``)."""
        return self.base.head

    def _find(self, path: str, key: str) -> nn.Module:
        module = self.base
        for name in path.split('.'):
            if not hasattr(module, name):
                raise ValueError(
                    f'`{key}={path!r}` names no sub-module of the base '
                    f'algorithm {type(self.base).__name__}; its children are '
                    f'{[n for n, _ in self.base.named_children()]}.')
            module = getattr(module, name)
        return module

    def forward(self,
                inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.base(inputs, data_samples, mode=mode)

    def extract_feat(self, inputs: torch.Tensor):
        return self.base.extract_feat(inputs)

    @torch.no_grad()
    def extract_proto_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalised projections the prototypes are built from, (B, D)."""
        if self.proto_branch not in ONLINE_BRANCHES:
            out = self._find(self.proto_branch, 'proto_branch')(inputs)
            return pooled_embedding(_first_tensor(out))
        feats = self.base.backbone(inputs)
        if isinstance(self.base.neck, MULTI_RESOLUTION_NECKS):
            feats = [feats]
        with batch_statistics(self.base.neck, len(inputs)) \
                if self.proto_branch == 'online_batch_stats' \
                else nullcontext():
            out = self.base.neck(feats)
        if self.proto_branch == 'predictor':
            out = self.base.head.predictor([_first_tensor(out)])
        return pooled_embedding(_first_tensor(out))

    @property
    def _recording(self) -> bool:
        bank = self.memory_bank
        return bank is not None and bank.recording

    def loss(self, inputs: List[torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        recording = self._recording
        # every view the step projects goes to the bank, or the first one
        every = recording and self.memory_bank.views == 'all'
        calls, proj, branch = [], [], []

        def on_backbone(module, args, kwargs, out):
            if every or not proj:  # the calls the projections may hold
                images = args[0] if args else next(iter(kwargs.values()))
                calls.append((images, tensors_in(out)))

        def capture(store, all_calls=False):
            return lambda m, args, out: store.append(
                (tensors_in(args), _first_tensor(out))) \
                if all_calls or not store else None

        hooks = [
            self.base.backbone.register_forward_hook(
                on_backbone, with_kwargs=True),
            self._find(self.proj_module, 'proj_module').register_forward_hook(
                capture(proj, every))
        ]
        if recording and self.proto_branch not in ONLINE_BRANCHES[:2]:
            module = self._find(
                'head.predictor' if self.proto_branch == 'predictor' else
                self.proto_branch, 'proto_branch')
            hooks.append(module.register_forward_hook(capture(branch, every)))
        try:
            losses = self.base.loss(inputs, data_samples)
        finally:
            for hook in hooks:
                hook.remove()
        if not proj:
            raise RuntimeError(
                f'HIRL found no online projection: `proj_module='
                f'{self.proj_module!r}` was not called by '
                f'{type(self.base).__name__}.loss(). Set `proj_module` to the '
                'module whose output the base loss uses.')
        if not (self.prototypes.ready or recording):
            return losses

        views = list(inputs) if isinstance(inputs, (list, tuple)) \
            else [inputs]
        proj_in, proj_out = proj[0]
        index = self._pair_projection(calls, proj_in, len(proj_out), views)
        view, rows = self._paired_view(index, 'the online projection')
        sample_idx = torch.as_tensor([ds.sample_idx for ds in data_samples],
                                     device=proj_out.device)
        if recording:
            self._record(calls, proj, index, branch, views, sample_idx)
        if not self.prototypes.ready:
            return losses

        proj_all = global_pool(proj_out)  # rows x D
        embeddings = self.hirl_neck(proj_all[rows])
        if self.reassign_each_iter:
            # swapped, as the reference: the other view's projection
            _, other = self._paired_view(
                index, 'the online projection (a second view, for '
                '`reassign_each_iter`)',
                after=view)
            pos_paths = self.prototypes.assign(proj_all[other].detach())
        else:
            pos_paths = self.prototypes.paths(sample_idx)  # B x L
        # drawn from the stored tree, which a checkpoint may have sized
        neg_leaves = self.hirl_head.sample_negatives(
            len(rows), self.prototypes.cluster_sizes[0], proj_all.device)
        neg_paths = self.prototypes.expand_paths(neg_leaves)  # B x K x L
        losses['loss_spd'] = self.loss_weight * self.hirl_head.loss(
            embeddings, pos_paths, self.prototypes.centroids, neg_paths)
        return losses

    def _pair_projection(self, calls: list, proj_in: List[torch.Tensor],
                         num_rows: int,
                         views: List[torch.Tensor]) -> torch.Tensor:
        """(V, B) row of the projection holding view v of sample b, -1 where
        none: its inputs traced to backbone calls, their images to views."""
        segments = []
        for t in proj_in:
            for images, outs in calls:
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
        if sum(map(len, segments)) != num_rows:
            raise RuntimeError(
                f'HIRL cannot pair the online projection with the samples: '
                f'`{self.proj_module}` output {num_rows} rows from inputs of '
                f'{[len(s) for s in segments]} rows.')
        return match_views(segments, views)

    @staticmethod
    def _paired_view(index: torch.Tensor,
                     what: str,
                     after: int = -1) -> Tuple[int, torch.Tensor]:
        """The first view after ``after`` with a row for every sample, and
        those rows in sample order."""
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

    def _record(self, calls: list, proj: list, index: torch.Tensor,
                branch: list, views: List[torch.Tensor],
                sample_idx: torch.Tensor) -> None:
        """Hand this step's prototype-branch rows to the memory bank, once:
        of the view SPD embeds (``memory_bank.views == 'first'``) or of
        every view of the first view's size that the step projects."""
        every = self.memory_bank.views == 'all'
        # (V, B) rows of each projection call, paired with the views
        indices = [index] + [
            self._pair_projection(calls, c_in, len(c_out), views)
            for c_in, c_out in proj[1:]
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
        if self.proto_branch in ONLINE_BRANCHES:
            for (c_in, c_out), rows in zip(proj, indices):
                outs = global_pool(c_out)
                found = rows >= 0  # V x B
                if self.proto_branch == 'predictor':
                    outs, predicted = self._predicted(c_out, branch, every)
                    if not predicted[rows[found]].all():
                        raise RuntimeError(
                            'HIRL cannot record prototype features: the '
                            'calls of `head.predictor` do not predict from '
                            'the rows of the captured online projection.')
                feats.append(outs[rows[found]])
                ids.append(sample_idx.expand_as(rows)[found])
        else:
            if not branch:
                raise RuntimeError(f'HIRL cannot record prototype features: '
                                   f'`{self.proto_branch}` was not called by '
                                   f'{type(self.base).__name__}.loss().')
            for branch_in, branch_out in branch:
                f, i = self._matched(
                    global_pool(branch_out), branch_in[0], views, sample_idx,
                    every)
                feats.append(f)
                ids.append(i)
        self.record_proto_feat(
            torch.cat(feats).detach(),
            torch.cat(ids).to(feats[0].device))

    @staticmethod
    def _predicted(proj_out: torch.Tensor, branch: list,
                   every: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """``head.predictor``'s outputs aligned with the rows of the
        projection ``proj_out`` (R, D), and which rows it predicted (R, )."""
        out = proj_out.new_zeros(len(proj_out), 0)
        predicted = torch.zeros(
            len(proj_out), dtype=torch.bool, device=proj_out.device)
        for (pred_in, *_), pred_out in branch if every else branch[:1]:
            offset = row_offset(pred_in, proj_out)
            if offset is None or offset + len(pred_out) > len(proj_out):
                continue
            pred = global_pool(pred_out)
            if not out.shape[1]:
                out = pred.new_zeros(len(proj_out), pred.shape[1])
            out[offset:offset + len(pred)] = pred
            predicted[offset:offset + len(pred)] = True
        return out, predicted

    def _matched(self, feats: torch.Tensor, images: torch.Tensor,
                 views: List[torch.Tensor], sample_idx: torch.Tensor,
                 every: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """A momentum branch's rows and the samples their images are views
        of: of every global view, or of each sample's lowest view. Under
        several processes the images are paired against every rank's
        views (MoCo's batch shuffle sends key images to other ranks): an
        all-gather of O(B) hashes, never of images or features."""
        V, B = len(views), len(views[0])
        device = feats.device
        world_size = get_world_size()
        if world_size == 1:  # rows of a view itself: no hashing
            offset = next((o for o in (row_offset(images, v)
                                       for v in views) if o is not None), None)
            if offset is not None:
                return feats, sample_idx[offset:offset +
                                         len(images)].to(device)
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
                f'reached `{self.proto_branch}` is one of the input views.')
        col = eq[found].int().argmax(1)
        ids, view = table[1, col], table[2, col]
        if not every and len(ids):  # each sample's lowest view only
            lowest = view.new_full((int(ids.max()) + 1, ),
                                   V).scatter_reduce(0, ids, view, 'amin')
            keep = view == lowest[ids]
            found, ids = found[keep], ids[keep]
        return feats[found], ids

    def _record_matched(self, feats: torch.Tensor, images: torch.Tensor,
                        views: List[torch.Tensor],
                        sample_idx: torch.Tensor) -> None:
        """Record a momentum branch's rows by the sample their image is a
        view of (:meth:`_matched`, each sample's lowest view)."""
        # through the class: the method needs only `proto_branch` of self
        self.record_proto_feat(
            *HIRL._matched(self, feats, images, views, sample_idx, False))

    @staticmethod
    def _strip_base_prefix(module, state_dict, prefix, local_metadata):
        for key in list(state_dict):
            if key.startswith(prefix + 'base.'):
                new_key = prefix + key[len(prefix) + len('base.'):]
                state_dict[new_key] = state_dict.pop(key)
        return state_dict

    def _add_base_prefix(self, state_dict, prefix, *args, **kwargs):
        own = tuple(prefix + name + '.' for name, _ in self.named_children()
                    if name != 'base')
        for key in list(state_dict):
            if key.startswith(prefix) and not key.startswith(own) \
                    and not key.startswith(prefix + 'base.'):
                state_dict[prefix + 'base.' + key[len(prefix):]] = \
                    state_dict.pop(key)
