import copy
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import default_collate
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS
from torch.utils.data import DataLoader, Subset

from hirl_mm.clustering import (HierarchicalClustering, check_num_clusters,
                                hierarchical_kmeans, normalize_rows_)
from hirl_mm.models.utils import HierarchicalPrototypeMixin
from ..feature_extractor import extract_feature_shard

DEFAULT_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
# The HIRL reference's faiss settings (random init, niter 20, nredo 5).
DEFAULT_KMEANS_CFG = dict(niter=20, nredo=5, init='random')
FEATURE_SOURCES = ('extract', 'memory_bank')
# labels a hirl_mm data set may offer, for the tree's diagnostics
LABEL_GETTERS = dict(fine='get_gt_labels', coarse='get_coarse_labels')


def _ori_model(model):
    return model.module if is_model_wrapper(model) else model


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

    Where the features come from (``feature_source``):

    - ``'extract'`` (the HIRL reference): every image is re-embedded with
      the deterministic ``pipeline`` through ``model.extract_proto_feat``
      (each rank its ``DefaultSampler(round_up=False)`` shard). Costs one
      inference pass over the data set per clustering; use it to reproduce
      the reference, or when clustering rarely.
    - ``'memory_bank'`` (DeepCluster-v2, facebookresearch/swav
      ``main_deepclusterv2.py``): in the epoch before a clustering the
      model hands the features of the images it trains on to
      ``model.record_proto_feat``, which keeps one row per image on each
      rank's device; the next clustering uses them with no extra pass.
      Images no rank trained on (``drop_last``) are re-embedded as with
      ``'extract'``, split over the ranks; a bank that is empty (a run
      resumed at a clustering epoch, or ``warmup_epochs=0``) falls back to
      ``'extract'`` for that clustering, with a log line. Use it when
      clustering often at scale (every epoch at ImageNet size).

    ``load_from`` (fine-tuning from a checkpoint, not ``--resume``) resets
    the checkpoint's prototypes: they belong to another run and maybe to
    another data set. ``--resume`` keeps them.

    Each clustering is logged (logger, and visualizer scalars at step
    ``epoch`` under ``prototypes/``): seconds for the features and the
    k-means, per level the objective (sum of squared distances), non-empty
    clusters and cluster sizes in images (max, median, fraction of the
    images in the largest cluster), the adjusted Rand index of the new
    level-0 assignment against the previous one, and, when the training
    data set has labels (``get_gt_labels`` / ``get_coarse_labels``), the
    NMI and Hungarian accuracy of every level against them. Computed on
    rank 0.

    Args:
        warmup_epochs (int): First epoch that uses prototypes.
            Defaults to 20.
        interval (int): Re-cluster every ``interval`` epochs. Defaults to 1.
        feature_source (str): ``'extract'`` or ``'memory_bank'``, see above.
            Defaults to ``'extract'``.
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
                 pipeline: Optional[Sequence[dict]] = None,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None,
                 kmeans_cfg: Optional[dict] = None) -> None:
        if feature_source not in FEATURE_SOURCES:
            raise ValueError(f'feature_source must be one of '
                             f'{FEATURE_SOURCES}, got {feature_source!r}.')
        if interval < 1 or warmup_epochs < 0:
            raise ValueError('interval must be >= 1 and warmup_epochs >= 0, '
                             f'got {interval} and {warmup_epochs}.')
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.feature_source = feature_source
        self.pipeline = list(pipeline or DEFAULT_PIPELINE)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.kmeans_cfg = dict(DEFAULT_KMEANS_CFG, **(kmeans_cfg or {}))
        self.dataloader = None
        self.labels: Dict[str, np.ndarray] = {}

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
        # Fail before any compute if the data cannot hold the tree.
        train_set = runner.train_dataloader.dataset
        if len(train_set) == 0:
            raise ValueError('The training data set is empty.')
        check_num_clusters(
            len(train_set), model.num_clusters, 'model.num_clusters')
        # The checkpoint was loaded before this hook runs (Runner.train).
        if getattr(runner, '_load_from', None) is not None and \
                not getattr(runner, '_resume', False) and \
                model.prototype_epoch >= 0:
            runner.logger.info(
                f'load_from: the checkpoint\'s prototypes (built for epoch '
                f'{model.prototype_epoch}, {model.prototypes.cluster_sizes} '
                'clusters) are reset; this run builds its own from epoch '
                f'{self.warmup_epochs}. Use --resume to keep them.')
            model.prototypes.reset()

        train_cfg = runner.cfg.train_dataloader
        dataset = copy.deepcopy(train_cfg['dataset'])
        dataset['pipeline'] = self.pipeline
        self.dataloader = Runner.build_dataloader(
            dict(
                dataset=dataset,
                batch_size=self.batch_size or train_cfg['batch_size'],
                num_workers=self.num_workers if self.num_workers is not None
                else train_cfg.get('num_workers', 0),
                sampler=dict(
                    type='DefaultSampler', shuffle=False, round_up=False),
                collate_fn=dict(type='default_collate')))
        if self.feature_source == 'memory_bank':
            model.enable_memory_bank(len(train_set))
        self.labels = {}
        for name, getter in LABEL_GETTERS.items():
            try:
                labels = np.asarray(getattr(train_set, getter)())
            except (AttributeError, KeyError, TypeError, ValueError):
                continue  # no such labels: those diagnostics are skipped
            if labels.ndim == 1 and len(labels) and labels.min() >= 0:
                self.labels[name] = labels

    def before_train_epoch(self, runner: Runner) -> None:
        epoch = runner.epoch
        model = _ori_model(runner.model)
        # resumed inside an epoch whose prototypes are stored: keep them
        if self.is_clustering_epoch(epoch) and \
                model.prototype_epoch != epoch:
            self.cluster(runner, model, epoch)
        bank = model.memory_bank
        if bank is not None:
            bank.reset()
            # record the epoch before each clustering only
            bank.recording = self.is_clustering_epoch(epoch + 1)

    def cluster(self, runner: Runner, model: HierarchicalPrototypeMixin,
                epoch: int) -> HierarchicalClustering:
        """Build and install the tree of ``epoch`` (a collective)."""
        start = time.perf_counter()
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
            previous = model.prototypes.assignments.cpu().numpy()
        model.load_clustering(clustering, epoch)
        if get_rank() == 0:
            self.log_clustering(runner, clustering, previous, seconds, epoch)
        return clustering

    def shard_features(
        self, runner: Runner, model: HierarchicalPrototypeMixin
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's features (S, D) and their ``sample_idx`` (S, ), on
        its device; every image on exactly one rank (a collective)."""
        bank = model.memory_bank
        if self.feature_source == 'extract' or bank is None:
            return self.extract(model)
        feats, sample_idx, missing = bank.shard()
        if len(missing) == bank.num_samples:
            runner.logger.info(
                'The memory bank is empty (a resumed run, no epoch recorded '
                'yet, or a model whose loss does not call record_proto_feat)'
                ": re-embedding the training set ('extract') for this "
                'clustering.')
            return self.extract(model)
        if len(missing):
            runner.logger.info(
                f'Re-embedding {len(missing)} images no rank trained on in '
                'the last epoch (drop_last).')
            # an equal share of the leftovers on every rank
            part = missing[get_rank()::get_world_size()].tolist()
            loader = DataLoader(
                Subset(self.dataloader.dataset, part),
                batch_size=self.dataloader.batch_size,
                collate_fn=default_collate)
            extra, extra_idx = extract_feature_shard(
                model.extract_proto_feat, loader, model=model)
            if feats is not None and len(extra) and \
                    extra.shape[1] != feats.shape[1]:
                raise ValueError(
                    'model.record_proto_feat was given '
                    f'{feats.shape[1]}-d features, '
                    f'model.extract_proto_feat gives {extra.shape[1]}-d: '
                    'both must give the prototypes\' features.')
            if len(extra):  # appended to the bank's rows: no copy of them
                bank.record(
                    extra.to(feats) if feats is not None else extra, extra_idx)
                feats, sample_idx = bank.rows()
            elif feats is None:  # this rank holds no image at all
                feats, sample_idx = extra, extra_idx
        return feats, sample_idx

    def extract(
        self, model: HierarchicalPrototypeMixin
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the deterministic re-embedding: features
        (S, D) on the model's device and their ``sample_idx`` (S, )."""
        feats, sample_idx = extract_feature_shard(
            model.extract_proto_feat,
            self.dataloader,
            model=model,
            progress=True)
        return normalize_rows_(feats), sample_idx

    def log_clustering(self, runner: Runner,
                       clustering: HierarchicalClustering,
                       previous: Optional[np.ndarray], seconds: dict,
                       epoch: int) -> Dict[str, float]:
        """Log the tree's statistics (and label agreement) as scalars."""
        from hirl_mm.evaluation.functional import (clustering_scores,
                                                   prototype_tree_scores)
        scalars = {f'seconds_{k}': v for k, v in seconds.items()}
        stats = getattr(clustering, 'stats', None) or {}
        for key, values in stats.items():
            if key.startswith(('seconds', 'iterations')) and \
                    np.ndim(values) == 1:
                scalars.update({
                    f'level{lvl}_{key}': float(v)
                    for lvl, v in enumerate(values)
                })
        paths = clustering.paths()  # N x L
        num_images = len(paths)
        for lvl, dist in enumerate(clustering.distances):
            sizes = np.bincount(
                paths[:, lvl], minlength=len(clustering.centroids[lvl]))
            filled = sizes[sizes > 0]
            scalars.update({
                f'level{lvl}_objective':
                float(np.sum(dist)),
                f'level{lvl}_nonempty':
                int(len(filled)),
                f'level{lvl}_max_size':
                int(filled.max()),
                f'level{lvl}_median_size':
                float(np.median(filled)),
                f'level{lvl}_largest_fraction':
                float(filled.max()) / num_images,
            })
        if previous is not None and len(previous) == num_images:
            scalars['level0_ari_vs_previous'] = clustering_scores(
                previous, clustering.assignments)['ari']
        labels = {k: v for k, v in self.labels.items() if len(v) == num_images}
        if labels:
            scalars.update({
                k: v
                for k, v in prototype_tree_scores(paths, labels).items()
                if k.endswith(('_nmi', '_acc'))
            })
        scalars = {f'prototypes/{k}': v for k, v in scalars.items()}
        runner.logger.info(f'Prototypes of epoch {epoch}: ' +
                           ', '.join(f'{k[len("prototypes/"):]}={v:.4g}'
                                     for k, v in scalars.items()))
        runner.visualizer.add_scalars(scalars, step=epoch)
        return scalars
