"""What online evaluation costs a pre-training run: the training step with
and without :class:`OnlineLinearProbeHook`, and one kNN monitor
(:class:`FeatureValLoop` on the config's held-out split) against the
training steps of the epochs between two monitors.

    python benchmarks/online_evaluation_overhead.py [--config ...]
        [--steps 100] [--repeat 3] [--out ...]

Two copies of the model train on the same batch, one step of each in turn
(medians over ``--steps``, ``--repeat`` times), so a change of the
machine's load hits both; the probe's copy has the hook's forward hook and
its classifier step after every training step, as in a run.

Prints a table and writes ``benchmarks/results/online_evaluation.json``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import hirl_mm  # noqa: F401
from hirl_mm.engine.hooks import OnlineLinearProbeHook

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/simsiam/simsiam_resnet18_1xb64-coslr-10e_fmnist.py'


def step_times(models, probe, runner, batch, steps):
    """Median seconds of a training step of the plain model and of the one
    with the probe (its hooks around the step), interleaved; and the
    median of the probe's own work after the step."""
    optims = [
        OptimWrapper(torch.optim.SGD(m.parameters(), lr=0.01)) for m in models
    ]
    times, probe_only = [[], []], []
    for i in range(steps + 2):
        for j, (model, optim) in enumerate(zip(models, optims)):
            model.train()
            start = time.perf_counter()
            if j:
                probe.before_train_iter(runner, i, batch)
            model.train_step(batch, optim)
            if j:
                mid = time.perf_counter()
                probe.after_train_iter(runner, i, batch, outputs={})
            end = time.perf_counter()
            if i >= 2:  # warm-up steps
                times[j].append(end - start)
                if j:
                    probe_only.append(end - mid)
    return [float(np.median(t))
            for t in times] + [float(np.median(probe_only))]


def monitor_seconds(cfg: Config) -> dict:
    """Seconds of the config's kNN monitor (the second of two runs: the
    first builds the data set's cache), and its metrics."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = tempfile.mkdtemp()
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.val()
    start = time.perf_counter()
    metrics = runner.val_loop.run()
    return dict(
        seconds=time.perf_counter() - start,
        images=len(runner.val_dataloader.dataset),
        metrics=metrics)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks', 'results',
                         'online_evaluation.json'))
    args = parser.parse_args()
    torch.manual_seed(0)
    init_default_scope('mmpretrain')
    MessageHub.get_current_instance().update_info('max_iters', 1000)
    cfg = Config.fromfile(osp.join(ROOT, args.config))
    bs = cfg.train_dataloader.batch_size
    g = torch.Generator().manual_seed(0)
    batch = dict(
        inputs=[
            torch.randint(
                0, 255, (bs, 3, 32, 32), generator=g, dtype=torch.uint8)
            for _ in range(2)
        ],
        data_samples=[
            DataSample(metainfo=dict(sample_idx=i)).set_gt_label(i % 10)
            for i in range(bs)
        ])
    plain = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    probed = copy.deepcopy(plain)
    runner = SimpleNamespace(
        model=probed,
        train_dataloader=SimpleNamespace(
            dataset=SimpleNamespace(metainfo=dict(
                classes=list('0123456789')))),
        logger=MMLogger.get_current_instance(),
        visualizer=SimpleNamespace(add_scalars=lambda *a, **k: None),
        epoch=0,
        iter=0,
        hooks=[])
    probe_cfg = [
        h for h in cfg.custom_hooks if h.type == 'OnlineLinearProbeHook'
    ][0]
    probe = OnlineLinearProbeHook(**{
        k: v
        for k, v in probe_cfg.items() if k != 'type'
    })
    probe.before_train(runner)

    repeats = []
    for _ in range(args.repeat):
        t_plain, t_probe, t_own = step_times([plain, probed], probe, runner,
                                             batch, args.steps)
        repeats.append(
            dict(
                step_plain_s=t_plain,
                step_probe_s=t_probe,
                probe_after_step_s=t_own,
                ratio=t_probe / t_plain))
    monitor = monitor_seconds(cfg)
    images = cfg.train_dataloader.dataset.subset_size
    iters = images // bs
    t_plain = float(np.median([r['step_plain_s'] for r in repeats]))
    interval = cfg.train_cfg.val_interval
    monitor_ratio = monitor['seconds'] / (interval * iters * t_plain)
    result = dict(
        config=args.config,
        batch=bs,
        images=images,
        threads=torch.get_num_threads(),
        load_average=os.getloadavg()[0],
        steps=args.steps,
        repeats=repeats,
        ratio_median=float(np.median([r['ratio'] for r in repeats])),
        knn_monitor_s=monitor['seconds'],
        knn_monitor_images=monitor['images'],
        knn_monitor_metrics=monitor['metrics'],
        val_interval=interval,
        knn_monitor_share_of_training=monitor_ratio)
    print(f'{args.config}: batch {bs}, {torch.get_num_threads()} threads, '
          f'load {os.getloadavg()[0]:.1f}')
    print('| repeat | step, plain (s) | step, with the probe (s) | '
          "the probe's own work (ms) | ratio |\n|---|---|---|---|---|")
    for i, r in enumerate(repeats):
        print(f'| {i} | {r["step_plain_s"]:.4f} | {r["step_probe_s"]:.4f} | '
              f'{1000 * r["probe_after_step_s"]:.2f} | {r["ratio"]:.4f} |')
    print(f'kNN monitor: {monitor["seconds"]:.1f} s for '
          f'{monitor["images"]} images every {interval} epochs = '
          f'{100 * monitor_ratio:.1f}% of the training steps of '
          f'{interval} x {iters} steps ({images} images)')
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'written {args.out}')


if __name__ == '__main__':
    main()
