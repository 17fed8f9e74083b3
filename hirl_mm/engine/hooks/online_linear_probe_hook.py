"""A linear classifier trained on the training steps' backbone features."""
import logging
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_comm_device, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.utils import apply_to
from mmpretrain.registry import HOOKS, OPTIMIZERS
from mmpretrain.utils import get_ori_model
from torch.nn.utils import skip_init

from hirl_mm.models.utils.row_pairing import match_views
from hirl_mm.utils import pooled_embedding
from .rng_state_hook import saves_iter_checkpoint

CHECKPOINT_KEY = 'online_linear_probe'
# unit-length features need large weights: a large lr
DEFAULT_OPTIMIZER = dict(type='SGD', lr=1.0, momentum=0.9)


def first_view_features(images: torch.Tensor, out,
                        views: Sequence[torch.Tensor]) -> torch.Tensor:
    """A backbone call's rows of the first view whose every image it saw,
    in sample order, pooled and L2-normalised, (B, C), detached.

    The rows are paired with the samples by the images themselves
    (:func:`match_views`: by storage where the call's input is a view, else
    by exact equality), whatever order the algorithm stacked its views in
    (MMPretrain's SimCLR interleaves them, SwAV concatenates them). Feature
    maps (N, C, H, W) are averaged, ViT tokens (N, L, C) give their class
    token (as iBOT's ``extract_feat``), (N, C) is taken as it is.

    Args:
        images (Tensor): The call's input, (N, ...).
        out (Tensor | Sequence[Tensor]): Its output; the last tensor is
            used, (N, ...).
        views (Sequence[Tensor]): The step's preprocessed views, each
            (B, ...).

    Returns:
        Tensor: (B, C), float.
    """
    while isinstance(out, (list, tuple)):
        out = out[-1]
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or \
            len(out) != len(images):
        raise RuntimeError(
            'OnlineLinearProbeHook: the backbone returned '
            f'{getattr(out, "shape", type(out))} for {len(images)} images; '
            'it needs one row per image.')
    index = match_views([images.detach()], views)  # V x B
    full = (index >= 0).all(1).nonzero()[:, 0]
    if not len(full):
        raise RuntimeError(
            'OnlineLinearProbeHook cannot pair the first backbone call of '
            'the step with the samples: no input view has all of its '
            f'{index.shape[1]} images among the {len(images)} images of the '
            'call (images found per view: '
            f'{(index >= 0).sum(1).tolist()}). Inputs mixed or changed '
            'before the backbone (e.g. CutMix) are not supported.')
    out = out.detach()[index[full[0]]]  # B x ...
    if out.dim() == 3:  # B x L x C tokens
        out = out[:, 0]
    return pooled_embedding(out)


@HOOKS.register_module()
class OnlineLinearProbeHook(Hook):
    """Train a linear classifier on the pre-training's own backbone
    features and log its running top-1 on the training batches, per epoch.

    A signal besides the loss while pre-training on a labelled set (as
    solo-learn's online linear classifier): it rises as the backbone's
    features separate the classes, no separate probe run needed.

    Features: forward hooks keep the step's preprocessed views and the
    output of the model's first ``backbone`` call in each training step;
    of that call's rows, those of the first view whose every image it saw,
    paired with the samples by the images themselves (see
    :func:`first_view_features`): view 1 of SimSiam, MoCo, BYOL, Barlow
    Twins, HCSC, SimCLR (whose views are interleaved); the first global
    crop of SwAV, DINO and SS-PRL (one backbone call on the global crops);
    iBOT's first global crop as its student sees it, masked. Pooled and
    L2-normalised as the kNN benchmark's features; labels: the data
    samples' ``gt_label``.

    The pre-training is left as it is: the features come from the forward
    the step already does (no extra forward, no BN statistics updated) and
    are detached (no gradient reaches the backbone); the classifier has its
    own optimizer, outside the runner's ``optim_wrapper`` (param groups, lr
    schedule and gradient clipping unchanged); it is zero-initialised and
    has no dropout, so it draws no random number. A run at a fixed seed
    trains bit for bit the same with and without it.

    Distributed: the classifier's gradients are averaged over the ranks
    (one all-reduce of C x K + K floats per step), so every rank's
    classifier stays the same; the accuracy counts are summed at the end of
    each epoch. Every tensor handed to a collective is on
    ``get_comm_device()`` (NCCL's device).

    Logged at the end of each epoch: ``online_probe/top1`` (%) and
    ``online_probe/loss`` (mean cross-entropy) of the epoch's batches, each
    scored before the classifier's step on it, written to the visualizer
    (``vis_data/scalars.json``, with the 1-based ``epoch``) and to the log.
    Checkpoints carry the classifier, its optimizer and the epoch's counts
    so far (``online_linear_probe``); ``--resume`` continues them.

    A training set without labels turns the hook off, with a warning: a
    data sample without ``gt_label`` (or with several), or, when
    ``num_classes`` is not given, a data set without ``classes`` metainfo
    (MMPretrain's ``CustomDataset(with_label=False)``).

    Args:
        num_classes (int, optional): Classes of ``gt_label``. Defaults to
            None: the length of the training set's ``classes`` metainfo.
        optimizer (dict, optional): The classifier's optimizer (without
            ``params``). Defaults to None: SGD, lr 1.0, momentum 0.9 (the
            features are unit vectors, so the logits need large weights).
    """

    # its step and counts come before CheckpointHook (VERY_LOW) saves
    priority = 'NORMAL'

    def __init__(self,
                 num_classes: Optional[int] = None,
                 optimizer: Optional[dict] = None) -> None:
        optimizer = dict(optimizer or DEFAULT_OPTIMIZER)
        if num_classes is not None and num_classes < 2:
            raise ValueError(
                f'num_classes must be at least 2, got {num_classes}.')
        if 'params' in optimizer:
            raise ValueError('optimizer takes no `params`: the hook gives it '
                             "the classifier's.")
        self.num_classes = num_classes
        self.optimizer_cfg = dict(optimizer)
        self.classifier: Optional[nn.Linear] = None
        self.optimizer = None
        self.enabled = True
        # [correct, images, summed loss] of the epoch so far, on the
        # classifier's device
        self.counts: Optional[torch.Tensor] = None
        self._loaded: Optional[dict] = None
        self._saved_counts: Optional[torch.Tensor] = None
        self._handles: list = []
        # within a training step: armed, the views, the features
        self._armed = False
        self._views: Optional[List[torch.Tensor]] = None
        self._feats: Optional[torch.Tensor] = None
        self._step_labels: Optional[torch.Tensor] = None

    def before_train(self, runner) -> None:
        if self.num_classes is None:
            dataset = runner.train_dataloader.dataset
            classes = getattr(dataset, 'metainfo', {}).get('classes')
            if not classes:
                self._disable(
                    f"the training set's metainfo ({type(dataset).__name__}) "
                    'has no `classes`; set `num_classes` if its samples '
                    'carry a `gt_label`')
                return
            if len(classes) < 2:
                raise ValueError(
                    'OnlineLinearProbeHook needs at least 2 classes; the '
                    f"training set's metainfo has {len(classes)}.")
            self.num_classes = len(classes)
        model = get_ori_model(runner.model)
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, nn.Module) or not isinstance(
                getattr(model, 'data_preprocessor', None), nn.Module):
            raise TypeError(
                'OnlineLinearProbeHook needs a model with `backbone` and '
                f'`data_preprocessor` modules; {type(model).__name__} has '
                'not both.')
        self._handles = [
            model.data_preprocessor.register_forward_hook(self._keep_views),
            backbone.register_forward_hook(self._capture, with_kwargs=True)
        ]

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _keep_views(self, module, args, out) -> None:
        # the step's preprocessed views, to pair the backbone's rows with
        if self._armed and self._views is None:
            inputs = out['inputs'] if isinstance(out, dict) else out[0]
            if not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            self._views = list(inputs)

    def _capture(self, module, args, kwargs, out) -> None:
        # the first backbone call of an armed training step only
        if not self._armed or self._feats is not None:
            return
        if self._views is None:
            raise RuntimeError(
                'OnlineLinearProbeHook: the backbone ran before the '
                "model's `data_preprocessor` in this training step.")
        images = args[0] if args else next(iter(kwargs.values()))
        with torch.no_grad():
            self._feats = first_view_features(images, out, self._views)
        self._views = None  # no reference kept to the step's images

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch=None) -> None:
        self._feats, self._views, self._step_labels = None, None, None
        if self.enabled:
            self._step_labels = self._labels(data_batch['data_samples'])
        self._armed = self._step_labels is not None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if not self._armed:
            return
        self._armed = False
        feats, self._feats, self._views = self._feats, None, None
        labels, self._step_labels = self._step_labels, None
        if feats is None:
            raise RuntimeError(
                'OnlineLinearProbeHook: the model did not call its backbone '
                'in this training step, so there are no features.')
        self._build(feats)
        labels = labels.to(feats.device)
        with torch.enable_grad():
            logits = self.classifier(feats)  # B x K
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad()
            loss.backward()
        self._average_grads()
        self.optimizer.step()
        self.counts += torch.stack([
            (logits.detach().argmax(1) == labels).sum().double(),
            logits.new_tensor(len(labels), dtype=torch.float64),
            loss.detach().double() * len(labels)
        ])
        if get_world_size() > 1 and saves_iter_checkpoint(runner):
            # the checkpoint (rank 0's) holds every rank's counts so far
            self._saved_counts = self._summed(self.counts)

    def after_train_epoch(self, runner) -> None:
        if self.counts is None:
            return
        correct, images, loss = self._summed(self.counts).tolist()
        self.counts.zero_()
        self._saved_counts = None
        if not images:
            return
        scalars = {
            'online_probe/top1': 100 * correct / images,
            'online_probe/loss': loss / images
        }
        runner.logger.info(
            f'Online linear probe, epoch {runner.epoch + 1}: top-1 '
            f"{scalars['online_probe/top1']:.2f} %, loss "
            f"{scalars['online_probe/loss']:.4f} on {int(images)} training "
            'images (first views, before each step).')
        runner.visualizer.add_scalars(
            dict(scalars, epoch=runner.epoch + 1), step=runner.iter)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.classifier is None:
            return
        counts = self.counts  # zeros at the end of an epoch
        if counts.any() and self._saved_counts is not None:
            counts = self._saved_counts
        checkpoint[CHECKPOINT_KEY] = apply_to(
            dict(
                classifier=self.classifier.state_dict(),
                optimizer=self.optimizer.state_dict(),
                counts=counts), lambda x: isinstance(x, torch.Tensor),
            lambda x: x.detach().cpu().clone())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # `load_from` without resuming starts a new run: a new classifier
        if getattr(runner, '_resume', False):
            self._loaded = checkpoint.get(CHECKPOINT_KEY)
            if self._loaded is not None and get_rank() > 0:
                # rank 0 restores the ranks' summed counts
                self._loaded = dict(
                    self._loaded,
                    counts=torch.zeros_like(self._loaded['counts']))

    def _labels(self, data_samples) -> Optional[torch.Tensor]:
        """The batch's ``gt_label`` (B, ), or None (and the hook off) when
        a sample has none or several."""
        labels = [ds.get('gt_label') for ds in data_samples]
        if any(label is None or label.numel() != 1 for label in labels):
            self._disable('the training samples carry no single-class '
                          '`gt_label`')
            return None
        labels = torch.cat([label.reshape(1) for label in labels]).long()
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f'OnlineLinearProbeHook: gt_label {low if low < 0 else high} '
                f'is outside [0, {self.num_classes}) (num_classes='
                f'{self.num_classes}).')
        return labels

    def _disable(self, reason: str) -> None:
        """Turn the hook off for the rest of the run, with a warning."""
        self.enabled = False
        print_log(
            f'OnlineLinearProbeHook is off: {reason}.',
            logger='current',
            level=logging.WARNING)

    def _build(self, feats: torch.Tensor) -> None:
        """The classifier and its optimizer, at the first batch (the
        feature width is known then), from a resumed checkpoint if any."""
        if self.classifier is not None:
            return
        # zeros, not nn.Linear's random init: no random number drawn
        self.classifier = skip_init(
            nn.Linear, feats.shape[1], self.num_classes, device=feats.device)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        optimizer = dict(
            self.optimizer_cfg, params=self.classifier.parameters())
        self.optimizer = OPTIMIZERS.build(optimizer)
        self.counts = torch.zeros(3, dtype=torch.float64, device=feats.device)
        state, self._loaded = self._loaded, None
        if state is None:
            return
        try:
            self.classifier.load_state_dict(state['classifier'])
        except RuntimeError as e:
            raise RuntimeError(
                'OnlineLinearProbeHook: the checkpoint\'s classifier does not '
                f'fit {feats.shape[1]}-d features and {self.num_classes} '
                f'classes: {e}') from e
        self.optimizer.load_state_dict(state['optimizer'])
        self.counts.copy_(state['counts'])

    def _average_grads(self) -> None:
        """Each rank's classifier gradients replaced by the ranks' mean."""
        if get_world_size() == 1:
            return
        params = [p for p in self.classifier.parameters()]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        flat = flat.to(get_comm_device())
        all_reduce(flat, op='mean')
        flat = flat.to(params[0].device)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(g.view_as(p))

    @staticmethod
    def _summed(counts: torch.Tensor) -> torch.Tensor:
        """The counts summed over the ranks (a collective), on the CPU."""
        summed = counts.to(get_comm_device(), copy=True)
        all_reduce(summed)
        return summed.cpu()
