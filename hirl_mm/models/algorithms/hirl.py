from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmpretrain.models.necks import SwAVNeck
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from hirl_mm.utils import global_pool, pooled_embedding
from ..utils import HierarchicalPrototypeMixin

# Sub-modules of common MMPretrain algorithms that hold the momentum /
# teacher branch, i.e. ``Sequential(backbone, neck)`` averaged copies.
MOMENTUM_BRANCHES = ('encoder_k', 'momentum_encoder', 'target_net', 'teacher')
# Necks that take a list of backbone outputs, one per crop resolution.
MULTI_RESOLUTION_NECKS = (SwAVNeck, )


def _first_tensor(out) -> torch.Tensor:
    while isinstance(out, (list, tuple)):
        out = out[0]
    return out


def first_view(proj: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first view's rows of a projection of all views at once.

    Multi-crop algorithms (e.g. SwAV) project every crop in one call:
    (V * B, D) with the views stacked view by view, first view first.
    """
    if proj.shape[0] == batch_size:
        return proj
    if proj.shape[0] > batch_size and proj.shape[0] % batch_size == 0:
        return proj[:batch_size]  # V*B x D -> B x D
    raise RuntimeError(
        f'The captured online projection has {proj.shape[0]} rows, which is '
        f'not a multiple of the batch size {batch_size}: `proj_module` '
        'must output one row per image (per view).')


@MODELS.register_module()
class HIRL(HierarchicalPrototypeMixin, BaseModel):
    """HIRL: hierarchical representation learning on top of any SSL method.

    The base algorithm trains as usual and learns the finest semantics; its
    online projection (captured from ``proj_module``'s first call in a step,
    so the backbone never runs twice; the first view's rows when all crops
    are projected at once, as in SwAV) goes through :class:`HIRLNeck` to one
    embedding per prototype level and :class:`SPDHead` discriminates the
    image's own root-to-leaf path of prototypes from sampled ones. The
    prototypes are built by :class:`HierarchicalPrototypeHook` through the
    :class:`HierarchicalPrototypeMixin` interface; before the first
    clustering only the base losses are returned.

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
        proto_branch (str, optional): Dotted path, inside ``base``, of the
            branch the prototype features come from: a module mapping images
            to projections (e.g. 'momentum_encoder'), or 'online' for
            ``neck(backbone(x))``. Defaults to None: the first of
            'encoder_k', 'momentum_encoder', 'target_net', 'teacher' that
            ``base`` has,
            else 'online'.
        reassign_each_iter (bool): Refresh the positive paths every
            iteration from the batch's captured projections (nearest level-0
            prototype, then its ancestors) instead of the hook's per-epoch
            assignments, as HIRL-SwAV does. The projections must live in the
            prototypes' space (``proto_branch='online'``). Defaults to False.
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
        self.loss_weight = loss_weight
        self.proj_module = proj_module
        self._find(proj_module, 'proj_module')
        if proto_branch is None:
            proto_branch = next(
                (b for b in MOMENTUM_BRANCHES if hasattr(base, b)), 'online')
        if proto_branch != 'online':
            self._find(proto_branch, 'proto_branch')
        self.proto_branch = proto_branch
        if reassign_each_iter and proto_branch != 'online':
            raise ValueError(
                '`reassign_each_iter=True` assigns the online projection to '
                'the prototypes, so they must be built from it: set '
                f"`proto_branch='online'` (got {proto_branch!r}).")
        self.reassign_each_iter = reassign_each_iter

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
        if self.proto_branch == 'online':
            feats = self.base.backbone(inputs)
            if isinstance(self.base.neck, MULTI_RESOLUTION_NECKS):
                feats = [feats]
            out = self.base.neck(feats)
        else:
            out = self._find(self.proto_branch, 'proto_branch')(inputs)
        return pooled_embedding(_first_tensor(out))

    def loss(self, inputs: List[torch.Tensor],
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        captured = []
        handle = self._find(self.proj_module, 'proj_module') \
            .register_forward_hook(
                lambda m, i, o: captured.append(_first_tensor(o))
                if not captured else None)
        try:
            losses = self.base.loss(inputs, data_samples)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(
                f'HIRL found no online projection: `proj_module='
                f'{self.proj_module!r}` was not called by '
                f'{type(self.base).__name__}.loss(). Set `proj_module` to the '
                'module whose output the base loss uses.')
        if not self.prototypes.ready:
            return losses

        proj = first_view(global_pool(captured[0]), len(data_samples))
        embeddings = self.hirl_neck(proj)
        if self.reassign_each_iter:
            pos_paths = self.prototypes.assign(proj.detach())  # B x L
        else:
            sample_idx = torch.as_tensor(
                [ds.sample_idx for ds in data_samples], device=proj.device)
            pos_paths = self.prototypes.paths(sample_idx)  # B x L
        neg_leaves = self.hirl_head.sample_negatives(
            len(proj), self.num_clusters[0], proj.device)
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
