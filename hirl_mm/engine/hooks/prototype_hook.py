import copy
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.dist import broadcast, gather, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model.wrappers import is_model_wrapper
from mmengine.runner import Runner
from mmengine.utils import ProgressBar
from mmpretrain.registry import HOOKS

from hirl_mm.utils.hierarchical_kmeans import (check_num_clusters,
                                               hierarchical_kmeans)

DEFAULT_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]


def _ori_model(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class HiRLPrototypeHook(Hook):
    """Build the tree of prototypes of the model before training epochs.

    From ``warmup_epochs`` on, every ``interval`` epochs and before the
    epoch trains, every training image is embedded with a deterministic
    ``pipeline`` through ``model.extract_proto_feat`` (each rank its shard,
    no padding duplicates), the features are gathered on rank 0 only,
    clustered by :func:`hierarchical_kmeans` into ``model.num_clusters``,
    per-cluster concentrations are estimated (used by HCSC), and the result
    is broadcast into the model's prototype buffers (so
    checkpoints and ``--resume`` carry it).

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
        if not hasattr(model, 'prototypes'):
            raise TypeError(f'{type(self).__name__} needs a model with '
                            f'prototypes (e.g. HiRL), got {type(model)}.')
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
        if int(model.prototypes.epoch) == epoch:
            return  # resumed inside an epoch whose prototypes are stored
        features = self.extract(model)
        clustering = None
        if get_rank() == 0:
            runner.logger.info(
                f'Clustering {features.shape[0]} x {features.shape[1]} '
                f'features into {model.num_clusters} prototypes')
            clustering = hierarchical_kmeans(features, model.num_clusters,
                                             **self.kmeans_cfg)
        self._broadcast_into(model, clustering, epoch)

    @torch.no_grad()
    def extract(self, model) -> Optional[np.ndarray]:
        """Features of the whole training set (N, D) on rank 0, else None.

        Each rank fills one preallocated shard of ``ceil(N / world)`` rows
        (padding rows keep index -1), so a non-clustering rank holds about
        N x D / world floats; only rank 0 receives the shards.
        """
        was_training = model.training
        model.eval()
        rank, world = get_rank(), get_world_size()
        num_images = len(self.dataloader.dataset)
        shard, indices, filled = None, None, 0
        bar = ProgressBar(len(self.dataloader)) if rank == 0 else None
        for data in self.dataloader:
            data = model.data_preprocessor(data, False)
            feats = model.extract_proto_feat(data['inputs']).cpu()
            if shard is None:
                size = -(-num_images // world)
                shard = feats.new_zeros(size, feats.shape[1])
                indices = torch.full((size, ), -1, dtype=torch.long)
            shard[filled:filled + len(feats)] = feats
            indices[filled:filled + len(feats)] = torch.as_tensor(
                [ds.sample_idx for ds in data['data_samples']])
            filled += len(feats)
            if bar is not None:
                bar.update()
        model.train(was_training)
        shards, index_lists = gather(shard), gather(indices)
        if rank != 0:
            return None
        out = torch.empty(num_images, shard.shape[1])
        seen = torch.zeros(num_images, dtype=torch.long)
        for part, idx in zip(shards, index_lists):
            keep = idx >= 0
            out[idx[keep]] = part[keep]
            seen += torch.bincount(idx[keep], minlength=num_images)
        if not bool((seen == 1).all()):
            raise RuntimeError(
                'Prototype features must cover every training image once; '
                f'{int((seen == 0).sum())} images are missing and '
                f'{int((seen > 1).sum())} are duplicated.')
        return out.numpy()

    def _broadcast_into(self, model, clustering, epoch: int) -> None:
        """Copy rank 0's clustering into the prototype buffers of all ranks."""
        protos = model.prototypes
        device = protos.epoch.device
        num_images = len(self.dataloader.dataset)
        dim = torch.tensor(
            [0 if clustering is None else clustering.centroids[0].shape[1]],
            device=device)
        broadcast(dim)
        dim = int(dim)
        if clustering is not None:
            protos.update(clustering, epoch, clustering.concentrations())
        else:
            protos.assignments = protos.assignments.new_empty(num_images)
            for lvl, k in enumerate(protos.num_clusters):
                setattr(protos, f'centroids_{lvl}',
                        protos.epoch.new_empty(k, dim, dtype=torch.float))
                setattr(protos, f'concentrations_{lvl}',
                        protos.epoch.new_empty(k, dtype=torch.float))
                if lvl < protos.num_levels - 1:
                    setattr(protos, f'parents_{lvl}',
                            protos.epoch.new_empty(k))
        for buf in [protos.epoch, protos.assignments] + protos.centroids + \
                protos.parents + protos.concentrations:
            broadcast(buf)
