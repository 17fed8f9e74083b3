import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS

from hirl_mm.clustering import (HierarchicalClustering, check_num_clusters,
                                hierarchical_kmeans)
from hirl_mm.evaluation import (dataset_labels, prototype_stats_report,
                                prototype_tree_diagnostics)
from hirl_mm.models.utils import HierarchicalPrototypeMixin
from hirl_mm.models.utils.memory_bank import RECORDED_VIEWS
from hirl_mm.utils import broadcast_buffers, check_epoch_length
from hirl_mm.utils.rank_errors import errors_on_all_ranks
from ..prototype_features import (FEATURE_SOURCES, build_feature_loader,
                                  check_sample_idx, extract_prototype_features,
                                  prototype_feature_shard, restore_memory_bank)
from .rng_state_hook import saves_iter_checkpoint

DEFAULT_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
# The HIRL reference's faiss settings (random init, niter 20, nredo 5).
DEFAULT_KMEANS_CFG = dict(niter=20, nredo=5, init='random')


def _ori_model(model):
    return model.module if is_model_wrapper(model) else model


def _saves_epoch_checkpoint(runner: Runner) -> bool:
    """Whether a ``CheckpointHook`` saves at the end of this epoch."""
    return any(
        isinstance(hook, CheckpointHook) and hook.by_epoch and (
            hook.every_n_epochs(runner, hook.interval,
                                getattr(hook, 'save_begin', 0)) or
            (hook.save_last and hook.is_last_train_epoch(runner)))
        for hook in runner.hooks)


def _resumed_inside_epoch(runner: Runner) -> bool:
    """Whether the train loop resumed inside this epoch and skips the
    batches trained before (:class:`ResumableEpochBasedTrainLoop`), so the
    epoch goes on with what the checkpoint holds of it."""
    loop = getattr(runner, 'train_loop', None)
    return getattr(loop, 'resumed_batches', 0) > 0


@HOOKS.register_module()
class HierarchicalPrototypeHook(Hook):
    """Build the tree of prototypes of the model before training epochs.

    From ``warmup_epochs`` on, every ``interval`` epochs and before the
    epoch trains, each rank takes its shard of the training set's features
    (on its own device) and every rank runs the collective
    :func:`hierarchical_kmeans` into ``model.num_clusters``; no rank ever
    holds the N x D matrix. ``model.load_clustering`` then installs rank 0's
    tree (with per-cluster concentrations, used by HCSC) on every rank into
    buffers that checkpoints and ``--resume`` carry. The model must be a
    :class:`HierarchicalPrototypeMixin`; the hook uses nothing else of it.

    Where the features come from (``feature_source``; each rank's shard is
    read in :mod:`hirl_mm.engine.prototype_features`):

    - ``'extract'`` (the HIRL reference): every image is re-embedded with
      the deterministic ``pipeline`` through ``model.extract_proto_feat``
      (each rank its ``DefaultSampler(round_up=False)`` shard). Costs one
      inference pass over the data set per clustering; use it to reproduce
      the reference, or when clustering rarely.
    - ``'memory_bank'`` (DeepCluster-v2, facebookresearch/swav
      ``main_deepclusterv2.py``, with NPID's momentum rows): the model
      hands the features of the images it trains on to
      ``model.record_proto_feat`` (``bank_views='all'``: of every global
      view it projects in the prototypes' space; ``'first'``: of one view)
      and :class:`PrototypeMemoryBank` keeps one row per image, moved
      toward the mean of the step's views with ``bank_momentum``; the next
      clustering uses the rows with no extra pass. With ``bank_momentum >
      0`` (NPID: 0.5) every epoch that a clustering follows records, a
      row averages its image's views over the epochs, and image ``i``
      lives on rank ``i % world_size`` (each recording step all-gathers
      the rows: O(world_size x B x D) per rank). With 0 (the default) a
      row is the image's latest view on the rank that trained on it, and
      only the epoch before a clustering records (DeepCluster-v2). Images no
      rank has trained on (``drop_last``) are re-embedded as with
      ``'extract'``, split over the ranks; a bank that is empty (e.g.
      ``warmup_epochs=0``) falls back to ``'extract'`` for that clustering,
      with a log line. Use it when clustering often at scale (every epoch
      at ImageNet size).

      An epoch checkpoint saved at the end of a recording epoch (with
      ``bank_momentum > 0``, any epoch checkpoint) holds the bank
      (``memory_bank``: every rank's rows with their sample ids and owner
      rank), so ``--resume`` from it goes on with exactly the rows the
      uninterrupted run has. The cost, at such checkpoints only: the rows
      are gathered to rank 0 (in chunks of 32 MB per rank, through the
      communication device) before ``CheckpointHook`` saves, and rank 0's
      memory and the checkpoint hold them as N x D float32 (655 MB for
      ImageNet's 1.28M images x 128, MoCo v2; 10.5 GB x 2048, SimSiam),
      plus N int64 ids; on resume every rank loads the checkpoint and keeps
      its own rows. A run resumed on another number of ranks, or with
      another data set, re-embeds (``'extract'``) for the next clustering,
      with a log line. An iteration checkpoint
      (``CheckpointHook(by_epoch=False)``) saved in a recording epoch holds
      the rows recorded so far, gathered alike: resumed with
      :class:`ResumableEpochBasedTrainLoop`, the epoch goes on recording
      from them.

    ``load_from`` (fine-tuning from a checkpoint, not ``--resume``) resets
    the checkpoint's prototypes: they belong to another run and maybe to
    another data set. ``--resume`` keeps them.

    Each clustering is logged, computed on rank 0
    (:mod:`hirl_mm.evaluation.prototype_stats`): seconds for the
    features and the k-means, per level the objective (sum of squared
    distances), non-empty clusters and cluster sizes in images (max,
    median, fraction of the images in the largest cluster), the adjusted
    Rand index of the new level-0 assignment against the previous one, and,
    when the training data set has labels (``get_gt_labels`` /
    ``get_coarse_labels``), the NMI and Hungarian accuracy of every level
    against them. The logger prints a table of them, one row per level;
    the visualizer gets them as scalars under ``prototypes/`` at the step
    of the first iteration trained with the tree (the losses' x-axis:
    ``runner.iter + 1``, as ``LoggerHook``), with the 1-based ``epoch``.

    Args:
        warmup_epochs (int): First epoch that uses prototypes, counted
            from 0 (mmengine logs it as ``Epoch(train) [warmup_epochs +
            1]``). Defaults to 20.
        interval (int): Re-cluster every ``interval`` epochs. Defaults to 1.
        feature_source (str): ``'extract'`` or ``'memory_bank'``, see above.
            Defaults to ``'extract'``.
        bank_momentum (float): With ``'memory_bank'``, the weight of a
            row's past in each update, in [0, 1); 0 keeps the latest view
            (DeepCluster-v2), NPID uses 0.5. Defaults to 0.
        bank_views (str): With ``'memory_bank'``, what the model records:
            ``'all'`` the global views a step projects in the prototypes'
            space, averaged, or the ``'first'`` one. Defaults to
            ``'first'``.
        pipeline (list[dict], optional): Deterministic feature pipeline.
            Defaults to resize 256, centre crop 224.
        batch_size (int, optional): Extraction batch size per rank.
            Defaults to the training batch size.
        num_workers (int, optional): Extraction workers. Defaults to the
            training loader's.
        kmeans_cfg (dict, optional): Keyword arguments of
            :func:`hierarchical_kmeans` (niter, nredo, seed, init, backend,
            ...), over the reference's ``niter=20, nredo=5, init='random'``.
    """

    priority = 'NORMAL'

    def __init__(self,
                 warmup_epochs: int = 20,
                 interval: int = 1,
                 feature_source: str = 'extract',
                 bank_momentum: float = 0.,
                 bank_views: str = 'first',
                 pipeline: Optional[Sequence[dict]] = None,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None,
                 kmeans_cfg: Optional[dict] = None) -> None:
        if feature_source not in FEATURE_SOURCES:
            raise ValueError(f'feature_source must be one of '
                             f'{FEATURE_SOURCES}, got {feature_source!r}.')
        if not 0 <= bank_momentum < 1 or bank_views not in RECORDED_VIEWS:
            raise ValueError(
                f'bank_momentum must be in [0, 1) and bank_views one of '
                f'{RECORDED_VIEWS}, got {bank_momentum} and {bank_views!r}.')
        if interval < 1 or warmup_epochs < 0:
            raise ValueError('interval must be >= 1 and warmup_epochs >= 0, '
                             f'got {interval} and {warmup_epochs}.')
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.feature_source = feature_source
        self.bank_momentum = bank_momentum
        self.bank_views = bank_views
        self.pipeline = list(pipeline or DEFAULT_PIPELINE)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.kmeans_cfg = dict(DEFAULT_KMEANS_CFG, **(kmeans_cfg or {}))
        self.dataloader = None
        self.labels: Dict[str, np.ndarray] = {}
        # the memory bank on its way to (rank 0) and from a checkpoint
        self._bank_to_save: Optional[Tuple[tuple, dict]] = None
        self._resumed_bank: Optional[dict] = None

    def is_clustering_epoch(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs and \
            (epoch - self.warmup_epochs) % self.interval == 0

    def before_train(self, runner: Runner) -> None:
        model = _ori_model(runner.model)
        if not isinstance(model, HierarchicalPrototypeMixin):
            raise TypeError(
                f'{type(self).__name__} needs a model with prototypes, i.e. a '
                'HierarchicalPrototypeMixin (e.g. HIRL, HCSC), got '
                f'{type(model).__name__}.')
        # Fail before any compute if the data cannot train or hold the tree.
        check_epoch_length(runner.train_dataloader)
        train_set = runner.train_dataloader.dataset
        check_num_clusters(
            len(train_set), model.num_clusters, 'model.num_clusters')
        # The checkpoint was loaded before this hook runs (Runner.train).
        if getattr(runner, '_load_from', None) is not None and \
                not getattr(runner, '_resume', False) and \
                model.prototype_epoch >= 0:
            runner.logger.info(
                f'load_from: the checkpoint\'s prototypes (built for epoch '
                f'{model.prototype_epoch + 1}, '
                f'{model.prototypes.cluster_sizes} clusters) are reset; this '
                f'run builds its own from epoch {self.warmup_epochs + 1}. '
                'Use --resume to keep them.')
            model.prototypes.reset()

        self.dataloader = build_feature_loader(runner.cfg.train_dataloader,
                                               self.pipeline, self.batch_size,
                                               self.num_workers)
        # as early (the first use may be epochs away) and on every rank
        # alike (one image per pipeline: a read may fail on one node only)
        with errors_on_all_ranks():
            check_sample_idx(train_set, 'training')
            check_sample_idx(self.dataloader.dataset, 'feature pipeline')
        resumed_bank, self._resumed_bank = self._resumed_bank, None
        if self.feature_source == 'memory_bank':
            bank = model.enable_memory_bank(
                len(train_set), self.bank_momentum, self.bank_views)
            if resumed_bank is not None:
                # a bank of the epoch resumed inside feeds the next one's
                # clustering
                restore_memory_bank(
                    bank, resumed_bank, runner.logger,
                    runner.epoch + int(_resumed_inside_epoch(runner)))
        self.labels = dataset_labels(train_set)

    def before_train_epoch(self, runner: Runner) -> None:
        epoch = runner.epoch
        model = _ori_model(runner.model)
        # resumed inside an epoch whose prototypes are stored: keep them
        if self.is_clustering_epoch(epoch) and \
                model.prototype_epoch != epoch:
            self.cluster(runner, model, epoch)
        bank = model.memory_bank
        self._bank_to_save = None
        if bank is not None and not bank.momentum:
            # rows of the latest view: the epoch before each clustering
            # records from scratch (resumed inside it, the bank holds the
            # rows the checkpoint carried, recorded in its first batches)
            if not _resumed_inside_epoch(runner):
                bank.reset()
            bank.recording = self.is_clustering_epoch(epoch + 1)
        elif bank is not None:
            # momentum rows: every epoch that a clustering follows adds
            bank.recording = any(
                self.is_clustering_epoch(e)
                for e in range(epoch + 1, runner.max_epochs))

    def after_train_iter(self,
                         runner: Runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        # as in after_train_epoch: an iteration checkpoint of a recording
        # epoch carries the rows recorded so far, for a resume inside it;
        # mmengine counts the iteration after its hooks ran
        self._gather_bank(runner, saves_iter_checkpoint,
                          (runner.epoch, runner.iter + 1))

    def after_train_epoch(self, runner: Runner) -> None:
        # Runner.save_checkpoint runs on rank 0 alone, hence so does
        # before_save_checkpoint: the ranks' rows are gathered here, on
        # every rank, before CheckpointHook (lower priority) saves;
        # mmengine counts the epoch after its hooks ran
        self._gather_bank(runner, _saves_epoch_checkpoint,
                          (runner.epoch + 1, runner.iter))

    def _gather_bank(self, runner: Runner, saves_now, meta: tuple) -> None:
        """Gather the recording bank's rows to rank 0 (a collective) when
        ``saves_now(runner)``, for the checkpoint of ``(epoch, iter)``."""
        bank = _ori_model(runner.model).memory_bank
        # momentum rows carry the earlier epochs: in every checkpoint
        if bank is None or not (bank.recording or bank.momentum) or \
                not saves_now(runner):
            return
        state = bank.gather_state(dst=0)
        if state is not None:
            self._bank_to_save = (meta, state)

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta', {})
        if self._bank_to_save is not None and \
                self._bank_to_save[0] == (meta.get('epoch'), meta.get('iter')):
            checkpoint['memory_bank'] = self._bank_to_save[1]

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        # the bank is built in before_train, after the checkpoint is loaded
        if getattr(runner, '_resume', False):
            self._resumed_bank = checkpoint.get('memory_bank')

    def cluster(self, runner: Runner, model: HierarchicalPrototypeMixin,
                epoch: int) -> HierarchicalClustering:
        """Build and install the tree of ``epoch`` (a collective)."""
        start = time.perf_counter()
        # as DDP's broadcast_buffers would: every shard is embedded with
        # rank 0's normalisation statistics
        broadcast_buffers(model)
        feats, sample_idx = self.shard_features(runner, model)
        seconds = dict(features=time.perf_counter() - start)
        num_samples = len(self.dataloader.dataset)
        if get_rank() == 0:
            runner.logger.info(
                f'Clustering {num_samples} x {feats.shape[1]} features '
                f'({len(feats)} on rank 0, {get_world_size()} ranks) into '
                f'{model.num_clusters} prototypes')
        start = time.perf_counter()
        clustering = hierarchical_kmeans(
            feats,
            model.num_clusters,
            sample_idx=sample_idx,
            num_samples=num_samples,
            **self.kmeans_cfg)
        seconds['kmeans'] = time.perf_counter() - start
        del feats
        previous = None
        if get_rank() == 0 and model.prototypes.ready:
            # a copy, not a view of a buffer load_clustering may refill
            previous = model.prototypes.assignments.to(
                'cpu', copy=True).numpy()
        model.load_clustering(clustering, epoch)
        if get_rank() == 0:
            self.log_clustering(runner, clustering, previous, seconds, epoch)
        return clustering

    def shard_features(
        self, runner: Runner, model: HierarchicalPrototypeMixin
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's features (S, D) and their ``sample_idx`` (S, ), on
        its device; every image on exactly one rank (a collective)."""
        return prototype_feature_shard(model, self.dataloader,
                                       self.feature_source, runner.logger)

    def extract(
        self, model: HierarchicalPrototypeMixin
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the deterministic re-embedding: features
        (S, D) on the model's device and their ``sample_idx`` (S, )."""
        return extract_prototype_features(model, self.dataloader)

    def log_clustering(self, runner: Runner,
                       clustering: HierarchicalClustering,
                       previous: Optional[np.ndarray], seconds: dict,
                       epoch: int) -> Dict[str, float]:
        """Log the tree's statistics (and label agreement): a table for the
        logger, scalars for the visualizer.

        Rank 0 alone computes them while the other ranks wait in the next
        collective, so :func:`prototype_tree_diagnostics` costs O(N + K);
        and as the tree is already installed, a failure here is a warning,
        never the end of the training.

        Returns:
            dict: The ``prototypes/`` scalars.
        """
        stats = {}
        try:
            stats = prototype_tree_diagnostics(clustering, previous,
                                               self.labels)
        except Exception as exc:  # noqa: B902  diagnostics only
            runner.logger.warning(
                f'The statistics of the prototypes of epoch {epoch + 1} '
                f'failed ({type(exc).__name__}: {exc}); the tree is '
                'installed and training goes on.')
        message, scalars = prototype_stats_report(
            stats, seconds, [len(c) for c in clustering.centroids],
            list(self.labels), epoch)
        runner.logger.info(message)
        # the 1-based epoch, as the logger's records carry it
        runner.visualizer.add_scalars(
            dict(scalars, epoch=epoch + 1), step=runner.iter + 1)
        return scalars
