"""Toy-size versions of the embedded configs, shared by the tests."""
import gzip
import json
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dist import all_reduce, get_rank
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS, MODELS

from hirl_mm.models.heads import SPDHead

CONFIGS = osp.join(osp.dirname(osp.dirname(__file__)), 'configs')
HIRL_SIMSIAM = osp.join(CONFIGS, 'hirl',
                        'hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py')


def toy_cfg(work_dir,
            config: str = HIRL_SIMSIAM,
            max_epochs: int = 3,
            warmup_epochs: int = 1,
            num_clusters=(15, 5),
            num_train: int = 8,
            batch_size: int = 20,
            seed: int = 0) -> Config:
    """The config on 15 x ``num_train`` photo patches, deterministic."""
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.dataset = dict(
        type='PhotoPatches',
        split='train',
        num_train=num_train,
        num_test=2,
        pipeline=cfg.train_pipeline)
    cfg.train_cfg.max_epochs = max_epochs
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.randomness = dict(seed=seed, deterministic=True)
    cfg.log_level = 'WARNING'
    # the embedded configs' kNN monitor (Fashion-MNIST): off at toy size
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    if cfg.model.type in ('HIRL', 'HCSC'):
        cfg.model.num_clusters = list(num_clusters)
        for hook in cfg.custom_hooks:
            if hook.type == 'HierarchicalPrototypeHook':
                hook.warmup_epochs = warmup_epochs
                hook.num_workers = 0
                hook.kmeans_cfg = dict(nredo=1, niter=10)
    return cfg


@HOOKS.register_module(force=True)
class ToyLossRecorder(Hook):
    """Writes ``{iter: loss}`` (the mean over ranks) to a JSON file."""

    def __init__(self, out_file: str) -> None:
        self.out_file, self.losses = out_file, {}

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        loss = outputs['loss'].detach().clone()
        all_reduce(loss, op='mean')
        self.losses[runner.iter] = float(loss)

    def after_train(self, runner):
        if get_rank() == 0:
            with open(self.out_file, 'w') as f:
                json.dump(self.losses, f)


@MODELS.register_module(force=True)
class ToyEveryLeafSPDHead(SPDHead):
    """SPD with every leaf as a negative path of every image (the real head
    draws them at random, per rank): the loss of a global batch then does
    not depend on how ranks split it."""

    def sample_negatives(self, batch_size, num_leaves, device):
        return torch.arange(
            num_leaves, device=device).expand(batch_size, num_leaves)


def batch_free(cfg: Config) -> Config:
    """GroupNorm instead of BN and identical deterministic views, so the
    loss of a global batch does not depend on how ranks split it."""
    gn = dict(type='GN', num_groups=32)
    base = cfg.model.base
    base.backbone.norm_cfg = gn
    base.neck.norm_cfg = gn
    base.head.predictor.norm_cfg = gn
    cfg.model.neck.norm_cfg = gn
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(
            type='MultiView',
            num_views=2,
            transforms=[[dict(type='Resize', scale=32)]]),
        dict(type='PackInputs')
    ]
    return cfg


def write_idx(path, array):
    """Write ``array`` as a gzipped IDX file (the Fashion-MNIST format)."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(
        array.shape, dtype='>u4').tobytes()
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())
