"""What ``find_unused_parameters=True`` costs DDP per training step on the
real model of a config (ResNet-50 for ``hirl_simsiam_r50.py``): the time
DDP spends after each forward, where it walks the autograd graph to find
the parameters without a gradient, against the step's forward + backward.

    python benchmarks/ddp_find_unused.py [--config configs/hirl_simsiam_r50.py]
        [--batch-size 32] [--image-size 64] [--steps 5] [--out ...]

One gloo process (DDP on CPU); SyncBN layers are built as BN (one process
has nothing to synchronise). The traversal's cost grows with the number
of autograd nodes, not with the image size, so small images give a
conservative ratio. Prints a table and writes
``benchmarks/results/ddp_find_unused.json``.
"""
import argparse
import json
import os
import os.path as osp
import socket
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS as ENGINE_MODELS
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.nn.parallel import DistributedDataParallel

import hirl_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class LocalBN(nn.modules.batchnorm._BatchNorm):
    """BN for any input rank, standing in for SyncBN in one process."""
    _abbr_ = 'bn'

    def _check_input_dim(self, x):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default='configs/hirl_simsiam_r50.py')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument(
        '--out',
        default=osp.join(ROOT, 'benchmarks', 'results',
                         'ddp_find_unused.json'))
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=0, world_size=1)
    ENGINE_MODELS.register_module('SyncBN', module=LocalBN, force=True)
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, args.config))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ddp = DistributedDataParallel(model, find_unused_parameters=True)
    post, spent = ddp._post_forward, []

    def timed(*a, **k):
        start = time.perf_counter()
        try:
            return post(*a, **k)
        finally:
            spent.append(time.perf_counter() - start)

    ddp._post_forward = timed
    size, batch = args.image_size, args.batch_size
    samples = [DataSample(metainfo=dict(sample_idx=i)) for i in range(batch)]
    steps = []
    for _ in range(args.steps + 1):
        views = [torch.randn(batch, 3, size, size) for _ in range(2)]
        start = time.perf_counter()
        losses = ddp(views, samples, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        steps.append(time.perf_counter() - start)
        model.zero_grad()
    spent, steps = spent[1:], steps[1:]  # the first step warms up
    nodes = sum(1 for p in model.parameters() if p.requires_grad)
    result = dict(
        config=args.config,
        batch_size=batch,
        image_size=size,
        parameter_tensors=nodes,
        after_forward_ms=1e3 * float(np.median(spent)),
        step_ms=1e3 * float(np.median(steps)),
        threads=torch.get_num_threads())
    result['fraction'] = result['after_forward_ms'] / result['step_ms']
    print('| config | batch x px | after-forward ms (find_unused) | '
          'forward + backward ms | fraction |\n|---|---|---|---|---|')
    print(f"| {args.config} | {batch} x {size} | "
          f"{result['after_forward_ms']:.2f} | {result['step_ms']:.0f} | "
          f"{100 * result['fraction']:.2f}% |")
    os.makedirs(osp.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
