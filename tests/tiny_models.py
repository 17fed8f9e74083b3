"""Tiny models, loaders and hook runners that several test files share."""
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS, MODELS
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset
from toy import toy_cfg

from hirl_mm.models.utils import HierarchicalPrototypeMixin

B, D = 6, 16

BACKBONE = dict(type='ResNet', depth=18, norm_cfg=dict(type='BN'))

NECK = dict(
    type='NonLinearNeck',
    in_channels=512,
    hid_channels=32,
    out_channels=D,
    num_layers=2,
    with_avg_pool=True,
    norm_cfg=dict(type='BN1d'))

BASES = dict(
    SimCLR=dict(
        type='SimCLR',
        backbone=BACKBONE,
        neck=NECK,
        head=dict(
            type='ContrastiveHead',
            loss=dict(type='CrossEntropyLoss'),
            temperature=0.1)),
    SwAV=dict(
        type='SwAV',
        backbone=BACKBONE,
        neck=dict(
            type='SwAVNeck',
            in_channels=512,
            hid_channels=32,
            out_channels=D,
            norm_cfg=dict(type='BN1d')),
        head=dict(
            type='SwAVHead',
            loss=dict(
                type='SwAVLoss', feat_dim=D, num_crops=[2],
                num_prototypes=8))),
    SimSiam=dict(
        type='SimSiam',
        backbone=BACKBONE,
        neck=dict(NECK, num_layers=3, with_last_bn_affine=False),
        head=dict(
            type='LatentPredictHead',
            loss=dict(type='CosineSimilarityLoss'),
            predictor=dict(
                type='NonLinearNeck',
                in_channels=D,
                hid_channels=8,
                out_channels=D,
                with_avg_pool=False,
                with_last_bn=False,
                with_last_bias=True,
                norm_cfg=dict(type='BN1d')))),
    MoCo=dict(
        type='MoCo',
        queue_len=6 * B,
        feat_dim=D,
        backbone=BACKBONE,
        neck=dict(
            type='MoCoV2Neck',
            in_channels=512,
            hid_channels=32,
            out_channels=D),
        head=dict(
            type='ContrastiveHead',
            loss=dict(type='CrossEntropyLoss'),
            temperature=0.2)),
)


def build(base, num_clusters=(4, 2), **kwargs):
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='HIRL',
            base=BASES[base],
            num_clusters=list(num_clusters),
            neck=dict(type='HIRLNeck', in_channels=D),
            head=dict(type='SPDHead', num_neg_path=64),
            **kwargs)).train()


def views(identical=False, seed=0, num_views=2):
    g = torch.Generator().manual_seed(seed)
    first = torch.randn(B, 3, 16, 16, generator=g)
    return [first] + [
        first.clone() if identical else torch.randn(B, 3, 16, 16, generator=g)
        for _ in range(num_views - 1)
    ]


def samples():
    return [DataSample(metainfo=dict(sample_idx=10 + b)) for b in range(B)]


class Indexed(Dataset):
    """Image i is the vector (i, 2i); fine label i % 3; coarse label i % 2
    on all images, or only on the even ones."""

    def __init__(self, n, coarse_everywhere=True):
        self.n, self.coarse_everywhere = n, coarse_everywhere

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        ds = DataSample(metainfo=dict(sample_idx=i)).set_gt_label(i % 3)
        if self.coarse_everywhere or i % 2 == 0:
            ds.set_field(i % 2, 'coarse_label')
        return dict(inputs=torch.tensor([i, 2 * i]), data_samples=ds)


def collate(batch):
    return dict(
        inputs=torch.stack([x['inputs'] for x in batch]),
        data_samples=[x['data_samples'] for x in batch])


def loader(dataset, order, batch_size=3):
    return DataLoader(
        dataset, batch_size=batch_size, sampler=order, collate_fn=collate)


def feat_fn(inputs):
    return inputs.float() * 0.5


class ChannelMeans(HierarchicalPrototypeMixin, BaseModel):
    """The smallest prototype model: an image's normalised channel means."""

    def __init__(self, num_clusters):
        super().__init__()
        self.init_prototypes(num_clusters)
        self.calls = self.images = 0

    def extract_proto_feat(self, inputs):
        self.calls += 1
        self.images += len(inputs)
        return F.normalize(inputs.float().mean((2, 3)), dim=1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return inputs


class Scalars:
    """A visualizer that keeps what the hook logs."""

    def __init__(self):
        self.logged = {}

    def add_scalars(self, scalars, step):
        self.logged[step] = dict(scalars)


def hook_runner(model, tmp_path, epoch, **hook_kwargs):
    init_default_scope('mmpretrain')
    # 30 images, batches of 4: a training epoch on 2 ranks too
    cfg = toy_cfg(tmp_path, num_train=2, batch_size=4)
    hook_cfg = next(
        dict(h) for h in cfg.custom_hooks
        if h.type == 'HierarchicalPrototypeHook')
    hook = HOOKS.build(dict(hook_cfg, **hook_kwargs))
    runner = SimpleNamespace(
        model=model,
        epoch=epoch,
        iter=0,
        max_epochs=cfg.train_cfg.max_epochs,
        cfg=cfg,
        train_dataloader=Runner.build_dataloader(cfg.train_dataloader),
        logger=MMLogger.get_current_instance(),
        visualizer=Scalars(),
        _load_from=None,
        _resume=False)
    return hook, runner


TOY_CLUSTERS = [8, 4, 2]  # 30 toy images


def toy_setup(path, tmp_path, batch_size=8):
    """Model, optimizer wrapper, training loader and config at toy size."""
    torch.manual_seed(0)
    init_default_scope('mmpretrain')
    cfg = toy_cfg(tmp_path, config=path, num_train=2, batch_size=batch_size)
    cfg.model.num_clusters = TOY_CLUSTERS[:len(cfg.model.num_clusters)]
    hub = MessageHub.get_current_instance()  # momentum schedules read these
    hub.update_info('iter', 0)
    hub.update_info('max_iters', 100)
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    return model, optim_wrapper, loader, cfg


def build_prototypes(model, loader, cfg):
    """Runs the config's prototype hook as the Runner would at warm-up."""
    hook_cfg = next(
        dict(h) for h in cfg.custom_hooks
        if h.type == 'HierarchicalPrototypeHook')
    hook = HOOKS.build(hook_cfg)
    runner = SimpleNamespace(
        model=model,
        epoch=hook.warmup_epochs,
        iter=0,
        cfg=cfg,
        train_dataloader=loader,
        logger=MMLogger.get_current_instance(),
        visualizer=SimpleNamespace(add_scalars=lambda *a, **k: None))
    hook.before_train(runner)
    hook.before_train_epoch(runner)
