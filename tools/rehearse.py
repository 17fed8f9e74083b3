"""Dress rehearsal of a config's prototype path on CPU ranks.

Runs a training config the way its GPU job would, at the config's own
number of prototypes K and feature dimension D, on ``--world-size`` gloo
processes, before any GPU hour is spent: its model (neck, head, prototype
store) with a stand-in backbone that emits features of the real width
cheaply, its ``model_wrapper_cfg`` as the GPU launcher builds it, its
default and custom hooks (checkpoint, RNG state, prototype hook with its
own feature source, interval and negatives), through

    warm-up -> first clustering -> steps -> second clustering ->
    checkpoint -> --resume -> next clustering -> steps

on ``--images`` synthetic images. What it cuts: the backbone, the image
sizes (crops scaled by ``--crop-scale``), the steps per epoch
(``--steps``), the warm-up (1 epoch) and the k-means' ``niter`` / ``nredo``
(its time is projected from the measured rate).

Per rank and phase it measures the wall time, the time spent inside
collectives and the longest single wait, the bytes moved by collectives
(the gradients' all-reduce through a DDP comm hook, DDP's buffer broadcast,
every other collective), the peak resident memory and the checkpoint's
size; it projects the work one rank does alone while the others wait
(the clustering diagnostics, the checkpoint) to ``--real-images`` and
exits 1 when

- a projected single-rank step exceeds ``--max-wait-fraction`` of the
  process group's timeout (``env_cfg.dist_cfg.timeout``, else NCCL's
  10 minutes), or
- a training step moves more than the gradients + 1 MiB + 8 KiB per image
  of the global batch, or broadcasts more than 1 MiB.

Usage::

    python tools/rehearse.py configs/hirl_simsiam_r50.py \
        --world-size 2 --images 32000

The table and the verdict are printed and written to
``<work-dir>/rehearsal.json``.
"""
import argparse
import copy
import json
import math
import os
import os.path as osp
import re
import resource
import socket
import sys
import time

MiB = 2**20
STAND_INS = {}
NCCL_DEFAULT_TIMEOUT = 600
REAL_IMAGES = dict(ImageNet=1281167, CocoDataset=118287)
COLLECTIVES = ('all_reduce', 'all_gather', 'all_gather_into_tensor',
               'broadcast', 'gather', 'reduce', 'scatter', 'reduce_scatter',
               'reduce_scatter_tensor', 'all_to_all', 'all_to_all_single',
               'barrier', '_broadcast_coalesced')
# which positional argument is this rank's input, where it is not the first
PAYLOAD_ARG = dict(
    all_gather=1,
    all_gather_into_tensor=1,
    reduce_scatter=1,
    reduce_scatter_tensor=1,
    all_to_all=1,
    all_to_all_single=1,
    _broadcast_coalesced=1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Dress rehearsal of a config on CPU ranks',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--world-size', type=int, default=2)
    parser.add_argument(
        '--images',
        type=int,
        help='synthetic training images; default: 1.07 x the finest level')
    parser.add_argument(
        '--real-images',
        type=int,
        help='images of the real training set, for the projection; '
        'default: from the data set type (ImageNet: 1281167)')
    parser.add_argument(
        '--real-world-size',
        type=int,
        help="the real job's ranks; default: the config name's NxbB")
    parser.add_argument(
        '--steps', type=int, default=2, help='training steps per epoch')
    parser.add_argument(
        '--batch-size',
        type=int,
        help="training images a step per rank (not the re-embedding's); "
        "default: the config's")
    parser.add_argument('--niter', type=int, default=1)
    parser.add_argument('--nredo', type=int, default=1)
    parser.add_argument('--crop-scale', type=float, default=0.125)
    parser.add_argument(
        '--feature-source',
        choices=['extract', 'memory_bank'],
        help="the prototype hook's; default: the config's")
    parser.add_argument('--max-wait-fraction', type=float, default=0.1)
    parser.add_argument('--work-dir')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides of the config (as '
        "tools/train.py's), applied before the rehearsal's")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- stand-ins
def register_stand_ins():
    """Register the synthetic data set, its image transform, the
    truncating sampler and the stand-in backbone into MMPretrain's
    registries (once per process)."""
    import numpy as np
    import torch
    import torch.nn as nn
    from _sync_bn import CPUSyncBatchNorm
    from mmcv.transforms import BaseTransform
    from mmengine.dataset import BaseDataset, DefaultSampler
    from mmengine.model import BaseModule
    from mmpretrain.registry import DATA_SAMPLERS, DATASETS, MODELS, TRANSFORMS

    if 'RehearsalDataset' in DATASETS:
        return

    @DATASETS.register_module()
    class RehearsalDataset(BaseDataset):
        """``num_images`` synthetic images with ``num_classes`` labels."""

        def __init__(self, num_images, num_classes=1000, **kwargs):
            self.num_images, self.num_classes = num_images, num_classes
            super().__init__(serialize_data=False, **kwargs)

        def load_data_list(self):
            return [
                dict(gt_label=i % self.num_classes)
                for i in range(self.num_images)
            ]

        def get_gt_labels(self):
            return np.arange(self.num_images) % self.num_classes

    @TRANSFORMS.register_module()
    class RehearsalImage(BaseTransform):
        """A seeded random image of the sample, in place of a file."""

        def __init__(self, size=32):
            self.size = size

        def transform(self, results):
            rng = np.random.RandomState(results['sample_idx'])
            img = rng.randint(0, 256, (self.size, self.size, 3), np.uint8)
            results.update(
                img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
            return results

    @DATA_SAMPLERS.register_module()
    class RehearsalSampler(DefaultSampler):
        """A ``DefaultSampler`` cut to ``steps`` batches per epoch."""

        def __init__(self, steps, batch_size, **kwargs):
            super().__init__(**kwargs)
            self.limit = steps * batch_size

        def __iter__(self):
            return iter(list(super().__iter__())[:self.limit])

        def __len__(self):
            return min(self.limit, super().__len__())

    @MODELS.register_module()
    class RehearsalBackbone(BaseModule):
        """Cheap features of the real backbone's width and output layout.

        Pools the image to 4 x 4, expands it by a fixed random map and a
        trainable linear layer to ``out_channels``: ``'map'`` gives
        (B, C, 1, 1) per output as a ResNet stage, ``'token'`` (B, C) as
        a ViT's class token.
        """

        def __init__(self, out_channels, num_outs=1, kind='map', **kwargs):
            super().__init__()
            self.out_channels, self.num_outs, self.kind = \
                out_channels, num_outs, kind
            gen = torch.Generator().manual_seed(0)
            self.register_buffer('expand', torch.randn(48, 512, generator=gen))
            self.fc = nn.Linear(512, out_channels)

        def forward(self, x, *args, **kwargs):
            pooled = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
            out = self.fc(torch.cos(pooled @ self.expand))
            if self.kind == 'map':
                out = out[:, :, None, None]
            return tuple(out for _ in range(self.num_outs))

    STAND_INS['SyncBN'] = CPUSyncBatchNorm


def stand_in_sync_bn():
    """Build every ``SyncBN`` (in configs or as a module's default
    ``norm_cfg``) as :class:`CPUSyncBatchNorm` in this process, which the
    project then treats as the SyncBN it is."""
    from mmengine.dist import get_world_size
    from mmengine.registry import MODELS

    import hirl_mm.models.utils.norm_statistics as norm_statistics
    cls = STAND_INS['SyncBN']
    MODELS.register_module('SyncBN', module=cls, force=True)
    across_ranks = norm_statistics._across_ranks
    norm_statistics._across_ranks = lambda norm: across_ranks(norm) or (
        isinstance(norm, cls) and get_world_size() > 1)


def stand_in_backbone(backbone_cfg: dict) -> dict:
    """The stand-in's config for a real backbone config, read from the
    real module (built once, not initialised)."""
    from mmpretrain.registry import MODELS
    real = MODELS.build(copy.deepcopy(backbone_cfg))
    if hasattr(real, 'feat_dim') and hasattr(real, 'out_indices'):  # ResNet
        return dict(
            type='RehearsalBackbone',
            out_channels=real.feat_dim,
            num_outs=len(real.out_indices),
            kind='map')
    out_type = getattr(real, 'out_type', None)
    if hasattr(real,
               'embed_dims') and out_type in ('cls_token', 'avg_featmap'):
        return dict(
            type='RehearsalBackbone',
            out_channels=real.embed_dims,
            num_outs=len(real.out_indices),
            kind='token')
    raise NotImplementedError(
        f'The rehearsal has no stand-in for a {type(real).__name__} '
        f'backbone (out_type={out_type!r}): ResNets and ViTs giving class '
        'tokens are supported.')


def _replace_backbones(node, seen):
    """Swap every ``backbone=dict(...)`` of the model config in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'backbone' and isinstance(value, dict) and \
                    'type' in value:
                node[key] = stand_in_backbone(value)
                seen.append(value['type'])
            else:
                _replace_backbones(value, seen)
    elif isinstance(node, list):
        for item in node:
            _replace_backbones(item, seen)


def _scale_crops(node, factor):
    """Scale the crop / resize sizes of a pipeline (nested views too)."""
    if isinstance(node, list):
        return [_scale_crops(n, factor) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _scale_crops(v, factor) for k, v in node.items()}
    kind = str(node.get('type', ''))
    for key in ('scale', 'crop_size'):
        if key in node and isinstance(node[key], int) and \
                kind.endswith(('Crop', 'Resize', 'ResizeEdge')):
            node[key] = max(8, int(round(node[key] * factor)))
    return node


def _strip_loading(pipeline):
    kept = [t for t in pipeline if 'LoadImage' not in str(t.get('type'))]
    return [dict(type='RehearsalImage')] + kept


def rehearsal_cfg(args, work_dir: str, resume: str = None):
    """The config to rehearse: the user's, with the cuts listed in the
    module docstring and nothing else changed."""
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--o'] + args.cfg_options).o)
    hooks = [
        h for h in cfg.get('custom_hooks', [])
        if h.get('type') == 'HierarchicalPrototypeHook'
    ]
    if not hooks:
        raise ValueError(f'{args.config} has no HierarchicalPrototypeHook: '
                         'nothing to rehearse.')
    proto = hooks[0]
    proto['warmup_epochs'] = 1
    if args.feature_source:
        proto['feature_source'] = args.feature_source
    interval = proto.get('interval', 1)
    proto['kmeans_cfg'] = dict(
        proto.get('kmeans_cfg') or {}, niter=args.niter, nredo=args.nredo)
    proto['pipeline'] = [dict(type='RehearsalImage'), dict(type='PackInputs')]
    seen = []
    _replace_backbones(cfg.model, seen)
    if not seen:
        raise ValueError('The model config has no backbone to stand in for.')
    seen = sorted(set(seen))
    loader = cfg.train_dataloader
    batch = args.batch_size or loader['batch_size']
    # --batch-size cuts the training steps' batch, not the re-embedding's
    proto.setdefault('batch_size', loader['batch_size'])
    pipeline = _scale_crops(
        _strip_loading(loader.dataset['pipeline']), args.crop_scale)
    real_type = str(loader.dataset.get('type', ''))
    cfg.train_dataloader = dict(
        batch_size=batch,
        num_workers=0,
        persistent_workers=False,
        drop_last=loader.get('drop_last', True),
        sampler=dict(
            type='RehearsalSampler',
            steps=args.steps,
            batch_size=batch,
            shuffle=True),
        collate_fn=dict(type='default_collate'),
        dataset=dict(
            type='RehearsalDataset', num_images=args.images,
            pipeline=pipeline))
    # the warm-up epoch, then clusterings at epochs 1, 1 + interval, ...
    loop = cfg.train_cfg.get('type', 'EpochBasedTrainLoop')  # the config's
    cfg.train_cfg = dict(type=loop, max_epochs=2 + 2 * interval)
    if resume is None:  # stop after the second clustering's epoch
        cfg.train_cfg['max_epochs'] = 2 + interval
    optim = cfg.optim_wrapper
    if 'Amp' in str(optim.get('type', '')):  # no CUDA autocast here
        optim['type'] = 'OptimWrapper'
        optim.pop('loss_scale', None)
        optim.pop('dtype', None)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_level = 'WARNING'
    cfg.launcher = 'pytorch'
    cfg.work_dir = work_dir
    cfg.visualizer = dict(type='Visualizer', vis_backends=[])
    cfg.pop('auto_scale_lr', None)
    cfg.pop('val_dataloader', None)
    cfg.pop('val_cfg', None)
    cfg.pop('val_evaluator', None)
    cfg.resume = resume is not None
    cfg.load_from = resume
    meta = dict(
        loop=loop,
        batch=batch,
        interval=interval,
        stand_in_for=seen,
        real_dataset=real_type,
        feature_source=proto.get('feature_source', 'extract'))
    return cfg, meta


# ---------------------------------------------------------- instrumentation
class Meter:
    """Per-phase wall time, collective time / bytes / calls and memory."""

    def __init__(self):
        self.phase = 'build'
        self.phases = {}
        self.steps = 0
        self._start = time.perf_counter()
        self.dim = None

    def record(self, phase):
        return self.phases.setdefault(
            phase,
            dict(
                wall=0.0,
                collective_s=0.0,
                longest_wait_s=0.0,
                calls={},
                bytes={},
                peak_rss_mb=0.0))

    def switch(self, phase):
        now = time.perf_counter()
        self.record(self.phase)['wall'] += now - self._start
        self.record(self.phase)['peak_rss_mb'] = \
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        previous, self.phase, self._start = self.phase, phase, now
        return previous

    def count(self, kind, nbytes, seconds=0.0):
        rec = self.record(self.phase)
        rec['calls'][kind] = rec['calls'].get(kind, 0) + 1
        rec['bytes'][kind] = rec['bytes'].get(kind, 0) + int(nbytes)
        rec['collective_s'] += seconds
        rec['longest_wait_s'] = max(rec['longest_wait_s'], seconds)


def _nbytes(obj):
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    return 0


def instrument_collectives(meter):
    """Count every ``torch.distributed`` tensor collective called from
    Python (``*_object`` ones through the tensor collectives they call):
    seconds inside it and the bytes this rank puts in (its input)."""
    import torch.distributed as dist

    def wrap(name, func):

        def counted(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                arg = args[PAYLOAD_ARG.get(name, 0)] if args else None
                kind = 'buffer_broadcast' \
                    if name == '_broadcast_coalesced' else name
                meter.count(kind, _nbytes(arg), time.perf_counter() - start)

        counted.__wrapped__ = func
        return counted

    for name in COLLECTIVES:
        if hasattr(dist, name):
            setattr(dist, name, wrap(name, getattr(dist, name)))


def instrument_ddp(runner, meter):
    """Gradient bytes through a comm hook (the all-reduce DDP would do)
    and the time DDP spends after forward (``find_unused_parameters``'
    graph traversal)."""
    import torch.distributed as dist
    from mmengine.model import is_model_wrapper
    model = runner.model
    if not is_model_wrapper(model) or \
            not hasattr(model, 'register_comm_hook'):
        return
    world = dist.get_world_size()
    all_reduce = getattr(dist.all_reduce, '__wrapped__', dist.all_reduce)

    def allreduce_hook(state, bucket):
        tensor = bucket.buffer()
        meter.count('gradients', _nbytes(tensor))
        fut = all_reduce(tensor.div_(world), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])

    model.register_comm_hook(state=None, hook=allreduce_hook)
    post = model._post_forward

    def timed_post_forward(*args, **kwargs):
        start = time.perf_counter()
        try:
            return post(*args, **kwargs)
        finally:
            rec = meter.record(meter.phase)
            rec['ddp_post_forward_s'] = rec.get('ddp_post_forward_s', 0.) + \
                time.perf_counter() - start

    model._post_forward = timed_post_forward


def make_phase_hook(meter, cluster_offset):
    from mmengine.hooks import Hook

    class RehearsalHook(Hook):
        priority = 'VERY_HIGH'

        def before_run(self, runner):
            instrument_ddp(runner, meter)
            proto = next(
                h for h in runner.hooks
                if type(h).__name__ == 'HierarchicalPrototypeHook')
            count = [cluster_offset]
            cluster, log = proto.cluster, proto.log_clustering

            def timed_cluster(*args, **kwargs):
                count[0] += 1
                previous = meter.switch(f'cluster_{count[0]}')
                try:
                    result = cluster(*args, **kwargs)
                    meter.dim = int(result.centroids[0].shape[1])
                    stats = getattr(result, 'stats', None) or {}
                    meter.record(meter.phase)['kmeans_stats'] = {
                        k: [float(x) for x in v]
                        for k, v in stats.items()
                        if isinstance(v, (list, tuple))
                    }
                    return result
                finally:
                    meter.switch(previous)

            def timed_log(*args, **kwargs):
                previous = meter.switch('diagnostics')
                try:
                    return log(*args, **kwargs)
                finally:
                    meter.switch(previous)

            proto.cluster, proto.log_clustering = timed_cluster, timed_log
            save = runner.save_checkpoint

            def timed_save(*args, **kwargs):
                previous = meter.switch('checkpoint')
                try:
                    return save(*args, **kwargs)
                finally:
                    meter.switch(previous)

            runner.save_checkpoint = timed_save
            meter.switch('resume' if runner._resume else 'warmup')

        def before_train_epoch(self, runner):
            if meter.phase == 'resume':
                return
            meter.switch('warmup' if runner.epoch < 1 else 'train')

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if meter.phase not in ('warmup', 'train'):
                meter.switch('train' if runner.epoch >= 1 else 'warmup')
            if meter.phase == 'train':
                meter.steps += 1

        def after_train(self, runner):
            meter.switch('end')

    return RehearsalHook()


# ------------------------------------------------------------------- ranks
def run_rank(rank, args, port, work_dir, resume, out):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(args.world_size))
    import torch
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.world_size))
    meter = Meter()
    instrument_collectives(meter)
    from _cli import build_runner

    import hirl_mm  # noqa: F401  (registers the project's modules)
    from hirl_mm.utils import finish_distributed
    register_stand_ins()
    stand_in_sync_bn()
    cfg, meta = rehearsal_cfg(args, work_dir, resume)
    runner = build_runner(cfg)  # tools/train.py's
    if any(isinstance(m, STAND_INS['SyncBN']) for m in runner.model.modules()):
        meta['stand_in_for'].append('SyncBN')
    runner.register_hook(make_phase_hook(meter, 2 if resume else 0))
    error = None
    try:
        runner.train()
    except Exception as exc:  # reported by the parent, which exits 1
        import traceback
        error = traceback.format_exc()
        print(f'rank {rank}: {exc!r}', file=sys.stderr)
    meter.switch('end')
    meter.phases.pop('end', None)
    trainable = sum(p.numel() * p.element_size()
                    for p in runner.model.parameters() if p.requires_grad)
    result = dict(
        rank=rank,
        phases=meter.phases,
        train_steps=meter.steps,
        dim=meter.dim,
        error=error,
        trainable_bytes=trainable,
        meta=meta,
        timeout=_timeout(cfg))
    with open(out.format(rank=rank), 'w') as f:
        json.dump(result, f)
    finish_distributed()
    # no interpreter teardown: gloo threads' C++ destructors there abort
    # now and then, which mp.spawn would report as a failed rank
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _timeout(cfg):
    dist_cfg = (cfg.get('env_cfg') or {}).get('dist_cfg', {})
    return dist_cfg.get('timeout') or NCCL_DEFAULT_TIMEOUT


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def launch(args, work_dir, resume, tag):
    import torch.multiprocessing as mp
    out = osp.join(work_dir, f'{tag}_rank{{rank}}.json')
    # one share of the cores per rank (OpenMP oversubscription is slow)
    os.environ['OMP_NUM_THREADS'] = str(
        max(1, (os.cpu_count() or 1) // args.world_size))
    mp.spawn(
        run_rank,
        args=(args, _free_port(), work_dir, resume, out),
        nprocs=args.world_size,
        join=True)
    return [
        json.load(open(out.format(rank=r))) for r in range(args.world_size)
    ]


# --------------------------------------------------------------- projection
def time_diagnostics(num_clusters, sizes, num_classes=1000):
    """Seconds of the hook's ``log_clustering`` on synthetic trees of the
    given sizes (rank 0's work after every clustering)."""
    import numpy as np
    from mmengine.logging import MMLogger

    from hirl_mm.clustering import HierarchicalClustering
    from hirl_mm.engine.hooks.prototype_hook import HierarchicalPrototypeHook

    class Runner:
        logger = MMLogger.get_instance('rehearsal', log_level='WARNING')
        iter = 0

        class visualizer:

            @staticmethod
            def add_scalars(*args, **kwargs):
                pass

    times = []
    rng = np.random.RandomState(0)
    for num in sizes:
        assign = [rng.randint(0, num_clusters[0], num)]
        parents = [
            rng.randint(0, k, num_clusters[lvl])
            for lvl, k in enumerate(num_clusters[1:])
        ]
        for parent in parents:
            assign.append(parent[assign[-1]])
        clustering = HierarchicalClustering(
            assignments=assign[0],
            centroids=[np.zeros((k, 1), np.float32) for k in num_clusters],
            parents=parents,
            distances=[rng.rand(num)] +
            [rng.rand(k) for k in num_clusters[1:]])
        hook = HierarchicalPrototypeHook()
        hook.labels = dict(fine=np.arange(num) % num_classes)
        previous = rng.randint(0, num_clusters[0], num)
        start = time.perf_counter()
        hook.log_clustering(Runner, clustering, previous, {}, 0)
        times.append(time.perf_counter() - start)
    return times


def summarise(args, first, second, work_dir):
    ranks = [
        dict(
            r0,
            phases=dict(r0['phases'], **{
                f'{k}*': v
                for k, v in r1['phases'].items()
            })) for r0, r1 in zip(first, second)
    ]
    meta, timeout = first[0]['meta'], first[0]['timeout']
    errors = [r['error'] for r in first + second if r['error']]
    num_clusters = args.num_clusters
    dim = next((r['dim'] for r in first + second if r.get('dim')), 0)
    world, batch = args.world_size, meta['batch']
    real_images = args.real_images or REAL_IMAGES.get(
        meta['real_dataset'].split('.')[-1], args.images)
    name = osp.basename(args.config)
    match = re.search(r'_(\d+)xb(\d+)', name)
    real_world = args.real_world_size or (int(match.group(1)) if match else 8)
    limit = args.max_wait_fraction * timeout
    failures = [f'a rank failed:\n{e}' for e in errors[:1]]

    # bytes per training step, on rank 0
    steps = sum(r['train_steps'] for r in (first[0], second[0])) or 1
    moved = dict(gradients=0, buffer_broadcast=0, other=0, broadcast=0)
    post_forward = 0.0
    for phase, rec in ranks[0]['phases'].items():
        if phase.rstrip('*') != 'train':
            continue
        post_forward += rec.get('ddp_post_forward_s', 0.0)
        for kind, nbytes in rec['bytes'].items():
            key = kind if kind in moved else 'other'
            moved[key] += nbytes
    per_step = {k: v / steps for k, v in moved.items()}
    broadcast_step = per_step['buffer_broadcast'] + sum(
        rec['bytes'].get('broadcast', 0)
        for p, rec in ranks[0]['phases'].items()
        if p.rstrip('*') == 'train') / steps
    extra_step = per_step['buffer_broadcast'] + per_step['broadcast'] + \
        per_step['other']
    extra_limit = MiB + 8 * 1024 * batch * world
    if broadcast_step > MiB:
        failures.append(
            f'a training step broadcasts {broadcast_step / MiB:.1f}'
            ' MiB (limit 1 MiB)')
    if extra_step > extra_limit:
        failures.append(f'a training step moves {extra_step / MiB:.1f} MiB '
                        f'beyond the gradients (limit {extra_limit / MiB:.1f}'
                        ' MiB)')

    # rank-0-only work, measured and projected
    diag = [
        rec['wall'] for p, rec in ranks[0]['phases'].items()
        if p.rstrip('*') == 'diagnostics'
    ]
    sizes = [args.images, 4 * args.images]
    t_small, t_large = time_diagnostics(num_clusters, sizes)
    slope = max(0.0, (t_large - t_small) / (sizes[1] - sizes[0]))
    diag_real = t_large + slope * (real_images - sizes[1])
    ckpt = sorted((f for f in os.listdir(work_dir) if f.endswith('.pth')),
                  key=lambda f: osp.getmtime(osp.join(work_dir, f)))
    ckpt_bytes = osp.getsize(osp.join(work_dir, ckpt[-1])) if ckpt else 0
    ckpt_s = [
        rec['wall'] for p, rec in ranks[0]['phases'].items()
        if p.rstrip('*') == 'checkpoint'
    ]
    ckpt_rate = ckpt_bytes / max(max(ckpt_s, default=0), 1e-6)
    # per image: its level-0 id in the tree (int64), plus a bank row and
    # its id when the bank is checkpointed
    per_image = 8 + (4 * dim + 8) * (meta['feature_source'] == 'memory_bank')
    ckpt_real = ckpt_bytes + per_image * (real_images - args.images)
    ckpt_real_s = ckpt_real / max(ckpt_rate, 1.0)
    solo = dict(diagnostics=diag_real)
    if ckpt_bytes:
        solo['checkpoint'] = ckpt_real_s
    for what, seconds in solo.items():
        if seconds > limit:
            failures.append(
                f'rank 0 alone: {what} projected to {seconds:.0f} s at '
                f'{real_images} images > {args.max_wait_fraction:g} x the '
                f'{timeout} s timeout')
    longest = max(rec['longest_wait_s'] for r in ranks
                  for rec in r['phases'].values())
    if longest > limit:
        failures.append(f'a rank waited {longest:.0f} s in one collective '
                        f'(> {limit:.0f} s) at the rehearsal\'s size')

    # k-means rate and projection (level 0)
    kmeans = {}
    for phase, rec in ranks[0]['phases'].items():
        stats = rec.get('kmeans_stats') or {}
        if stats.get('seconds') and stats.get('iterations'):
            kmeans[phase] = stats['seconds'][0] / max(1,
                                                      stats['iterations'][0])
    per_iter = min(kmeans.values()) if kmeans else float('nan')
    local, real_local = args.images / world, real_images / real_world
    flop_real = 2 * real_local * num_clusters[0] * dim
    report = dict(
        config=args.config,
        world_size=world,
        images=args.images,
        num_clusters=num_clusters,
        dim=dim,
        batch_per_rank=batch,
        stand_in_for=meta['stand_in_for'],
        timeout_s=timeout,
        real_images=real_images,
        real_world_size=real_world,
        per_step_bytes=per_step,
        broadcast_per_step=broadcast_step,
        ddp_post_forward_ms_per_step=1e3 * post_forward / steps,
        diagnostics_s=diag,
        diagnostics_projected_s=diag_real,
        diagnostics_timed=dict(zip(map(str, sizes), (t_small, t_large))),
        checkpoint_bytes=ckpt_bytes,
        checkpoint_s=ckpt_s,
        checkpoint_projected_s=ckpt_real_s,
        longest_wait_s=longest,
        kmeans_level0_s_per_iter=per_iter,
        kmeans_level0_projected_s_per_iter=per_iter * real_local / local,
        kmeans_level0_gflop_per_iter_per_rank=flop_real / 1e9,
        ranks=ranks,
        failures=failures)
    return report


def print_report(report):
    print(f"\nDress rehearsal of {report['config']}: "
          f"{report['world_size']} CPU ranks, {report['images']} images, "
          f"K = {report['num_clusters']}, D = {report['dim']}, "
          f"{report['batch_per_rank']} images a step per rank; stand-in "
          f"for {', '.join(report['stand_in_for'])}")
    print('\n| phase | rank | wall s | in collectives s | longest wait s '
          '| collective MiB | peak RSS MiB |')
    print('|---|---|---|---|---|---|---|')
    for r in report['ranks']:
        for phase, rec in r['phases'].items():
            print(f"| {phase} | {r['rank']} | {rec['wall']:.2f} | "
                  f"{rec['collective_s']:.2f} | {rec['longest_wait_s']:.2f} "
                  f"| {sum(rec['bytes'].values()) / MiB:.1f} | "
                  f"{rec['peak_rss_mb']:.0f} |")
    step = report['per_step_bytes']
    print(f"\nPer training step (rank 0): gradients "
          f"{step['gradients'] / MiB:.2f} MiB, DDP buffer broadcast "
          f"{step['buffer_broadcast'] / MiB:.3f} MiB, other collectives "
          f"{step['other'] / MiB:.3f} MiB; DDP after-forward "
          '(find_unused_parameters) '
          f"{report['ddp_post_forward_ms_per_step']:.2f} ms")
    print(f"Rank 0 alone after a clustering (diagnostics): "
          f"{', '.join(f'{s:.2f}' for s in report['diagnostics_s'])} s here; "
          f"projected to {report['real_images']} images: "
          f"{report['diagnostics_projected_s']:.1f} s")
    print(f"Checkpoint: {report['checkpoint_bytes'] / MiB:.0f} MiB, "
          f"projected write {report['checkpoint_projected_s']:.1f} s at "
          "this disk's rate")
    print(f"k-means level 0: {report['kmeans_level0_s_per_iter']:.2f} s per "
          f"Lloyd iteration per rank here; at {report['real_images']} images "
          f"on {report['real_world_size']} ranks "
          f"{report['kmeans_level0_gflop_per_iter_per_rank']:.0f} GFLOP per "
          'iteration per rank '
          f"({report['kmeans_level0_projected_s_per_iter']:.0f} s at this "
          "CPU's rate)")
    print(f"Process group timeout {report['timeout_s']} s; longest wait in "
          f"one collective {report['longest_wait_s']:.2f} s")
    if report['failures']:
        print('\nFAILED:\n- ' + '\n- '.join(report['failures']))
    else:
        print('\nPASSED')


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    import hirl_mm  # noqa: F401
    register_stand_ins()
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'rehearsal',
        osp.splitext(osp.basename(args.config))[0])
    os.makedirs(work_dir, exist_ok=True)
    for name in os.listdir(work_dir):
        if name.endswith(('.pth', '.json')) or name == 'last_checkpoint':
            os.remove(osp.join(work_dir, name))
    cfg, _ = rehearsal_cfg(args, work_dir)
    args.num_clusters = list(cfg.model['num_clusters'])
    if args.images is None:
        args.images = int(math.ceil(1.07 * args.num_clusters[0]))
    first = launch(args, work_dir, None, 'run')
    ckpt = osp.join(work_dir, f"epoch_{cfg.train_cfg['max_epochs']}.pth")
    if any(r['error'] for r in first) or not osp.exists(ckpt):
        second = [dict(r, phases={}, train_steps=0, error=None) for r in first]
    else:
        second = launch(args, work_dir, ckpt, 'resume')
    report = summarise(args, first, second, work_dir)
    with open(osp.join(work_dir, 'rehearsal.json'), 'w') as f:
        json.dump(report, f, indent=1)
    print_report(report)
    return 1 if report['failures'] else 0


if __name__ == '__main__':
    sys.exit(main())
