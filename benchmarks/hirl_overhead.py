"""Wall time per epoch of HIRL-SimSiam over SimSiam, split into training
steps, feature extraction and clustering (same data, batch and machine).

    python benchmarks/hirl_overhead.py [--images 10000] [--steps 20]

Prints a table and writes ``benchmarks/results/hirl_overhead.json``.
"""
import argparse
import json
import os
import os.path as osp
import time

import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import hirl_mm  # noqa: F401
from hirl_mm.clustering import hierarchical_kmeans
from hirl_mm.engine import extract_features

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BASE = 'configs/simsiam/simsiam_resnet18_1xb64-coslr-10e_fmnist.py'
HIRL = 'configs/hirl/hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py'


def step_time(model, batch, steps):
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        model.train_step(batch, optim)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=10000)
    parser.add_argument('--steps', type=int, default=20)
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
                0, 255, (bs, 3, 32, 32), generator=g, dtype=torch.uint8)
            for _ in range(2)
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
    loader = Runner.build_dataloader(
        dict(
            dataset=dict(
                hirl_cfg.train_dataloader.dataset,
                subset_size=args.images,
                pipeline=hook_cfg.pipeline),
            batch_size=hook_cfg.batch_size,
            num_workers=2,
            sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
            collate_fn=dict(type='default_collate')))
    start = time.perf_counter()
    feats = extract_features(
        hirl.extract_proto_feat, loader, model=hirl)['feats'].numpy()
    t_extract = time.perf_counter() - start
    start = time.perf_counter()
    clustering = hierarchical_kmeans(feats, hirl.num_clusters)
    t_cluster = time.perf_counter() - start
    hirl.prototypes.update(clustering, epoch=0)

    t_base = step_time(base, batch, args.steps)
    t_hirl = step_time(hirl, batch, args.steps)
    iters = args.images // bs
    epoch_base = iters * t_base
    rows = {}
    for interval in (1, 2, 5):
        epoch_hirl = iters * t_hirl + (t_extract + t_cluster) / interval
        rows[interval] = epoch_hirl / epoch_base
    result = dict(
        images=args.images,
        batch=bs,
        threads=torch.get_num_threads(),
        step_base_s=t_base,
        step_hirl_s=t_hirl,
        step_ratio=t_hirl / t_base,
        extract_s=t_extract,
        cluster_s=t_cluster,
        epoch_base_s=epoch_base,
        epoch_hirl_s=iters * t_hirl + t_extract + t_cluster,
        epoch_ratio_by_interval=rows)
    print(f'{args.images} images, batch {bs}, {torch.get_num_threads()} '
          'threads')
    print('| part | SimSiam | HIRL-SimSiam |\n|---|---|---|')
    print(f'| training step (s) | {t_base:.3f} | {t_hirl:.3f} |')
    print(f'| training steps / epoch (s) | {epoch_base:.1f} | '
          f'{iters * t_hirl:.1f} |')
    print(f'| feature extraction / epoch (s) | - | {t_extract:.1f} |')
    print(f'| hierarchical k-means / epoch (s) | - | {t_cluster:.1f} |')
    for interval, ratio in rows.items():
        print(f'| epoch ratio, clustering every {interval} epoch(s) | 1 | '
              f'{ratio:.3f} |')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
