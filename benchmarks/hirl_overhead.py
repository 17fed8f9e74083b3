"""Wall time per epoch of HIRL-SimSiam over SimSiam, split into training
steps, feature extraction and clustering (same data, batch and machine),
for both feature sources of the prototype hook: ``'extract'`` (a
re-embedding pass per clustering) and ``'memory_bank'`` (the training
steps record the features; no extra pass).

    python benchmarks/hirl_overhead.py [--images 10000] [--steps 100]
        [--image-size 32] [--out ...]

The three models' training steps are timed interleaved (one step of each
in turn, medians), so a change of the machine's load hits all of them.

Prints a table and writes ``benchmarks/results/hirl_overhead.json``.
"""
import argparse
import json
import os
import os.path as osp
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import HOOKS, MODELS
from mmpretrain.structures import DataSample

import hirl_mm  # noqa: F401
from hirl_mm.clustering import hierarchical_kmeans, normalize_rows_
from hirl_mm.engine import extract_feature_shard
from hirl_mm.engine.hooks.prototype_hook import DEFAULT_KMEANS_CFG

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BASE = 'configs/simsiam/simsiam_resnet18_1xb64-coslr-10e_fmnist.py'
HIRL = 'configs/hirl/hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py'


def step_times(models, batch, steps):
    """Median seconds of a training step of each model, interleaved."""
    optims = [
        OptimWrapper(torch.optim.SGD(m.parameters(), lr=0.01)) for m in models
    ]
    times = [[] for _ in models]
    for i in range(steps + 2):
        for model, optim, t in zip(models, optims, times):
            model.train()
            start = time.perf_counter()
            model.train_step(batch, optim)
            if i >= 2:  # warm-up steps
                t.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=10000)
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument(
        '--image-size',
        type=int,
        default=32,
        help='side of the training views and of the re-embedded images '
        '(the configs: 32; ImageNet: 224)')
    parser.add_argument(
        '--bank-momentum',
        type=float,
        help="the memory bank's momentum (default: the hook's)")
    parser.add_argument(
        '--bank-views',
        choices=['first', 'all'],
        help="what the bank records (default: the hook's)")
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks', 'results', 'hirl_overhead.json'))
    args = parser.parse_args()
    torch.manual_seed(0)
    init_default_scope('mmpretrain')
    MessageHub.get_current_instance().update_info('max_iters', 1000)

    hirl_cfg = Config.fromfile(osp.join(ROOT, HIRL))
    base_cfg = Config.fromfile(osp.join(ROOT, BASE))
    bs = base_cfg.train_dataloader.batch_size
    g = torch.Generator().manual_seed(0)
    batch = dict(
        inputs=[
            torch.randint(
                0,
                255, (bs, 3, args.image_size, args.image_size),
                generator=g,
                dtype=torch.uint8) for _ in range(2)
        ],
        data_samples=[
            DataSample(metainfo=dict(sample_idx=i)) for i in range(bs)
        ])

    base = MODELS.build(
        dict(base_cfg.model, data_preprocessor=base_cfg.data_preprocessor))
    hirl = MODELS.build(
        dict(hirl_cfg.model, data_preprocessor=hirl_cfg.data_preprocessor))

    # The prototype hook's two costs on the real embedded data.
    hook_cfg = [
        h for h in hirl_cfg.custom_hooks
        if h.type == 'HierarchicalPrototypeHook'
    ][0]
    pipeline = [
        dict(t, scale=args.image_size) if t.type == 'Resize' else t
        for t in hook_cfg.pipeline
    ]
    loader = Runner.build_dataloader(
        dict(
            dataset=dict(
                hirl_cfg.train_dataloader.dataset,
                subset_size=args.images,
                pipeline=pipeline),
            batch_size=hook_cfg.batch_size,
            num_workers=2,
            sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
            collate_fn=dict(type='default_collate')))
    start = time.perf_counter()
    feats, ids = extract_feature_shard(hirl.extract_proto_feat, loader, hirl)
    t_extract = time.perf_counter() - start
    normalize_rows_(feats)  # as the hook (the bank's rows are unit too)
    kmeans_cfg = dict(DEFAULT_KMEANS_CFG, **hook_cfg.get('kmeans_cfg', {}))

    def kmeans_seconds(**kwargs):
        """Median of 3 clusterings (and the last result)."""
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = hierarchical_kmeans(
                feats,
                hirl.num_clusters,
                sample_idx=ids,
                num_samples=len(ids),
                **dict(kmeans_cfg, **kwargs))
            times.append(time.perf_counter() - start)
        return float(np.median(times)), result

    t_cluster, clustering = kmeans_seconds()
    t_faiss, _ = kmeans_seconds(backend='faiss')
    hirl.prototypes.update(clustering, epoch=0)
    # the same model, recording its features in the memory bank
    recording = MODELS.build(
        dict(hirl_cfg.model, data_preprocessor=hirl_cfg.data_preprocessor))
    recording.load_state_dict(hirl.state_dict())
    given = dict(bank_momentum=args.bank_momentum, bank_views=args.bank_views)
    given = {k: v for k, v in given.items() if v is not None}
    hook = HOOKS.build(dict(hook_cfg, **given))  # else the hook's settings
    recording.enable_memory_bank(args.images, hook.bank_momentum,
                                 hook.bank_views).recording = True

    t_base, t_hirl, t_rec = step_times([base, hirl, recording], batch,
                                       args.steps)
    assert len(recording.memory_bank) == bs
    iters = args.images // bs
    epoch_base = iters * t_base
    epoch = dict(
        extract=iters * t_hirl + t_extract + t_cluster,
        memory_bank=iters * t_rec + t_cluster)
    rows = {}
    # with a clustering every `interval` epochs, only those epochs pay the
    # extraction, the k-means (and, for the bank, the recording epoch)
    rows['extract'] = {
        interval:
        (iters * t_hirl + (t_extract + t_cluster) / interval) / epoch_base
        for interval in (1, 2, 5)
    }
    # momentum rows record every epoch, the others the epoch before one
    rows['memory_bank'] = {
        interval: (iters * (t_hirl + (t_rec - t_hirl) *
                            (1 if hook.bank_momentum else 1 / interval)) +
                   t_cluster / interval) / epoch_base
        for interval in (1, 2, 5)
    }
    result = dict(
        images=args.images,
        image_size=args.image_size,
        batch=bs,
        bank_momentum=hook.bank_momentum,
        bank_views=hook.bank_views,
        threads=torch.get_num_threads(),
        load_average=os.getloadavg()[0],
        kmeans_cfg=kmeans_cfg,
        step_base_s=t_base,
        step_hirl_s=t_hirl,
        step_hirl_recording_s=t_rec,
        extract_s=t_extract,
        cluster_s=t_cluster,
        cluster_faiss_backend_s=t_faiss,
        epoch_base_s=epoch_base,
        epoch_s=epoch,
        epoch_ratio_by_interval=rows)
    print(f'{args.images} images of {args.image_size} px, batch {bs}, '
          f'{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}')
    print('| part | SimSiam | HIRL-SimSiam, extract | HIRL-SimSiam, '
          'memory_bank |\n|---|---|---|---|')
    print(f'| training step (s, median) | {t_base:.3f} | {t_hirl:.3f} | '
          f'{t_rec:.3f} |')
    print(f'| training steps / epoch (s) | {epoch_base:.1f} | '
          f'{iters * t_hirl:.1f} | {iters * t_rec:.1f} |')
    print(f'| feature extraction / clustering (s) | - | {t_extract:.1f} | '
          '0 |')
    print(f'| hierarchical k-means / clustering (s) | - | {t_cluster:.2f} | '
          f'{t_cluster:.2f} |')
    print(f'| the same with backend=\'faiss\' (s) | - | {t_faiss:.2f} | '
          f'{t_faiss:.2f} |')
    for interval in (1, 2, 5):
        print(f'| epoch ratio, clustering every {interval} epoch(s) | 1 | '
              f'{rows["extract"][interval]:.3f} | '
              f'{rows["memory_bank"][interval]:.3f} |')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
