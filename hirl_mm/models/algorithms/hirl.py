from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.models.necks import SwAVNeck
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from hirl_mm.utils import global_pool, pooled_embedding
from ..utils import (HierarchicalPrototypeMixin, ProjectionCapture,
                     batch_statistics, keep_own_buffers, sample_indices)
from ..utils.projection_capture import find_module, first_tensor, paired_view

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
    (``inputs[v][b]``) exactly (:class:`ProjectionCapture`). SPD embeds the
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
        find_module(base, proj_module, 'proj_module')
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
            find_module(base, proto_branch, 'proto_branch')
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
            out = find_module(self.base, self.proto_branch, 'proto_branch')(
                inputs)
            return pooled_embedding(first_tensor(out))
        feats = self.base.backbone(inputs)
        if isinstance(self.base.neck, MULTI_RESOLUTION_NECKS):
            feats = [feats]
        with batch_statistics(self.base.neck, len(inputs)) \
                if self.proto_branch == 'online_batch_stats' \
                else nullcontext():
            out = self.base.neck(feats)
        if self.proto_branch == 'predictor':
            out = self.base.head.predictor([first_tensor(out)])
        return pooled_embedding(first_tensor(out))

    def loss(self, inputs: List[torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """The base algorithm's losses, and ``loss_spd`` of the projection
        rows of the first view that pairs with every sample; the
        prototype-branch rows go to the memory bank while it records."""
        bank = self.memory_bank
        recording = bank is not None and bank.recording
        branch, branch_input = None, 'images'
        if recording and self.proto_branch == 'predictor':
            branch, branch_input = 'head.predictor', 'projection'
        elif recording and self.proto_branch not in ONLINE_BRANCHES:
            branch = self.proto_branch
        # every view the step projects goes to the bank, or the first one
        with ProjectionCapture(
                self.base,
                self.proj_module,
                branch,
                branch_input,
                every=recording and bank.views == 'all') as capture:
            losses = self.base.loss(inputs, data_samples)
        _, proj_out = capture.projection
        if not (self.prototypes.ready or recording):
            return losses

        views = list(inputs) if isinstance(inputs, (list, tuple)) \
            else [inputs]
        index = capture.pair(0, views)
        view, rows = paired_view(index, 'the online projection')
        sample_idx = sample_indices(data_samples, proj_out.device)
        if recording:
            self.record_proto_feat(
                *capture.bank_rows(index, views, sample_idx))
        if not self.prototypes.ready:
            return losses

        proj_all = global_pool(proj_out)  # rows x D
        embeddings = self.hirl_neck(proj_all[rows])
        if self.reassign_each_iter:
            # swapped, as the reference: the other view's projection
            _, other = paired_view(
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
