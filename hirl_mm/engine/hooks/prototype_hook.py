import copy
from typing import Optional, Sequence

import numpy as np
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model.wrappers import is_model_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS

from hirl_mm.clustering import check_num_clusters, hierarchical_kmeans
from hirl_mm.models.utils import HierarchicalPrototypeMixin
from ..feature_extractor import extract_features

DEFAULT_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]


def _ori_model(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class HierarchicalPrototypeHook(Hook):
    """Build the tree of prototypes of the model before training epochs.

    From ``warmup_epochs`` on, every ``interval`` epochs and before the
    epoch trains, every training image is embedded with a deterministic
    ``pipeline`` through ``model.extract_proto_feat`` by
    :func:`extract_features` (each rank its shard, no padding duplicates,
    gathered on rank 0 only), clustered on rank 0 by
    :func:`hierarchical_kmeans` into ``model.num_clusters``, and installed
    on every rank by ``model.load_clustering`` (with per-cluster
    concentrations, used by HCSC) into buffers that checkpoints and
    ``--resume`` carry. The model must be a
    :class:`HierarchicalPrototypeMixin`; the hook uses nothing else of it.

    Args:
        warmup_epochs (int): First epoch that uses prototypes.
            Defaults to 20.
        interval (int): Re-cluster every ``interval`` epochs. Defaults to 1.
        pipeline (list[dict], optional): Deterministic feature pipeline.
            Defaults to resize 256, centre crop 224.
        batch_size (int, optional): Extraction batch size per rank.
            Defaults to the training batch size.
        num_workers (int, optional): Extraction workers. Defaults to the
            training loader's.
        kmeans_cfg (dict, optional): Keyword arguments of
            :func:`hierarchical_kmeans` (niter, nredo, seed, ...).
    """

    priority = 'NORMAL'

    def __init__(self,
                 warmup_epochs: int = 20,
                 interval: int = 1,
                 pipeline: Optional[Sequence[dict]] = None,
                 batch_size: Optional[int] = None,
                 num_workers: Optional[int] = None,
                 kmeans_cfg: Optional[dict] = None) -> None:
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.pipeline = list(pipeline or DEFAULT_PIPELINE)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.kmeans_cfg = dict(kmeans_cfg or {})
        self.dataloader = None

    def before_train(self, runner: Runner) -> None:
        model = _ori_model(runner.model)
        if not isinstance(model, HierarchicalPrototypeMixin):
            raise TypeError(
                f'{type(self).__name__} needs a model with prototypes, i.e. a '
                'HierarchicalPrototypeMixin (e.g. HIRL, HCSC), got '
                f'{type(model).__name__}.')
        # Fail before any compute if the data cannot hold the tree.
        num_images = len(runner.train_dataloader.dataset)
        if num_images == 0:
            raise ValueError('The training data set is empty.')
        check_num_clusters(num_images, model.num_clusters,
                           'model.num_clusters')

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

    def before_train_epoch(self, runner: Runner) -> None:
        epoch = runner.epoch
        if epoch < self.warmup_epochs or \
                (epoch - self.warmup_epochs) % self.interval:
            return
        model = _ori_model(runner.model)
        if model.prototype_epoch == epoch:
            return  # resumed inside an epoch whose prototypes are stored
        features = self.extract(model)
        clustering = None
        if get_rank() == 0:
            runner.logger.info(
                f'Clustering {features.shape[0]} x {features.shape[1]} '
                f'features into {model.num_clusters} prototypes')
            clustering = hierarchical_kmeans(features, model.num_clusters,
                                             **self.kmeans_cfg)
        model.load_clustering(clustering, epoch)

    def extract(self,
                model: HierarchicalPrototypeMixin) -> Optional[np.ndarray]:
        """Features of the whole training set (N, D) on rank 0, else None."""
        out = extract_features(
            model.extract_proto_feat,
            self.dataloader,
            model=model,
            progress=True)
        return None if out is None else out['feats'].numpy()
