"""One training step on W processes against one process with the batch of all.

For each config: the model (seed 0) and a global batch of ``W x B`` images
through the config's own training pipeline (seeded random images in place
of the files). One process computes the loss terms on the global batch and,
for every term, its gradient; ``--world-size`` gloo processes compute them
on their ``B`` rows each and average the gradients over the ranks, as DDP
does. Compared: every loss term (mean over the ranks), every term's
gradient (relative L2 error), and the model's state after the step
(momentum encoders, queues, centres, BN statistics).

What legitimately depends on how the batch is split is controlled:

- BN: every BN layer normalises over the global batch (SyncBN, as the
  ImageNet configs' ``sync_bn``; a CPU stand-in on the ranks), so shuffled
  BN and per-GPU statistics drop out.
- Per-sample random draws (SPD's negative paths, HCSC's selection) are
  drawn row-aligned: every process draws the numbers of the whole global
  batch from the same seed and keeps its own rows; every other draw is
  seeded alike on every process. Stochastic depth and dropout are off.
- The tree of prototypes is set as after a clustering (the same random
  tree everywhere); SwAV-style queues are full, each rank holding its share
  of one global queue (the references' ``queue_length // world_size``).

What cannot be made equal is in ``EXPECTED``, with the reason, per
algorithm (HIRL inherits its base's): a term left out, or a gradient that
is the global one times a known factor.

Usage::

    python tools/dev/world_size_check.py CONFIG [CONFIG ...] \
        [--world-size 2] [--batch-size 4]

Prints a table and exits 1 when a config differs beyond the tolerance.
"""
import argparse
import contextlib
import itertools
import json
import os
import os.path as osp
import socket
import sys
import tempfile
import time
import warnings

# tools/_sync_bn.py, shared with tools/rehearse.py
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-6
GRAD_RTOL = 1e-4  # ||g_W - g_1|| / ||g_1|| over all parameters of a term
STATE_RTOL, STATE_ATOL = 1e-4, 1e-6
SEED = 0

# What differs by batch split on purpose, per algorithm class.
EXPECTED = dict(
    HCSC=dict(
        skip=('loss_proto', 'loss_proto_local'),
        why='prototypical term: the prototypes that are positive for any '
        "query of the GPU's batch are no negatives (gyfastas/HCSC "
        'hcsc/hcsc.py l.398-399, per GPU batch)'),
    BarlowTwins=dict(
        grad_scale=dict(loss='world'),
        why='the cross-correlation matrix is summed over the ranks without '
        'a gradient (MMPretrain LatentCrossCorrelationHead, as '
        'facebookresearch/barlowtwins main.py), so the averaged gradient '
        'is the global one / W; LARS normalises the update'),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='One training step on W gloo processes against one '
        'process with the global batch.')
    parser.add_argument('configs', nargs='+', help='pre-training configs')
    parser.add_argument('--world-size', type=int, default=2)
    parser.add_argument(
        '--batch-size', type=int, default=4, help='images per process')
    parser.add_argument(
        '--image-size',
        type=int,
        default=64,
        help='side of the random images fed to the pipeline')
    parser.add_argument('--out', help='write the report as JSON here')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        help='key=value overrides applied to every config')
    return parser.parse_args(argv)


# ------------------------------------------------------------------ a step
def _no_stochastic_depth(node):
    if isinstance(node, dict):
        for key in list(node):
            if key in ('drop_path_rate', 'drop_rate', 'attn_drop_rate'):
                node[key] = 0.
            else:
                _no_stochastic_depth(node[key])
    elif isinstance(node, list):
        for item in node:
            _no_stochastic_depth(item)


def quiet():
    """Warnings only from mmengine's logger (no per-parameter init
    lines) and the project's modules registered."""
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import hirl_mm  # noqa: F401
    MMLogger.get_instance('world_size_check', log_level='WARNING')
    warnings.filterwarnings('ignore', category=FutureWarning)
    init_default_scope('mmpretrain')


def load_cfg(path, options=()):
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(path)
    if options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--o'] + list(options)).o)
    _no_stochastic_depth(cfg.model)
    return cfg


def global_batch(cfg, num, size):
    """``num`` samples of seeded random images through the config's
    training pipeline (its file loading left out)."""
    import numpy as np
    from mmengine.dataset import Compose
    from mmengine.runner import set_random_seed
    pipeline = cfg.train_dataloader.dataset.pipeline
    pipeline = Compose(
        [t for t in pipeline if 'LoadImage' not in str(t.get('type'))])
    set_random_seed(SEED)
    samples = []
    for i in range(num):
        img = np.random.RandomState(i).randint(0, 256, (size, size, 3),
                                               np.uint8)
        samples.append(
            pipeline(
                dict(
                    img=img,
                    img_shape=img.shape[:2],
                    ori_shape=img.shape[:2],
                    sample_idx=i,
                    gt_label=i % 10)))
    return samples


def build_model(cfg, rank, world):
    """The config's model with SyncBN everywhere, seeded alike."""
    from _sync_bn import convert_sync_batchnorm
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import MODELS
    set_random_seed(SEED)
    model = MODELS.build(cfg.model)
    model.init_weights()
    convert_sync_batchnorm(model)
    return model.train()


def set_tree(model, inputs, num_images):
    """A seeded random tree of the model's sizes over ``num_images``."""
    import torch
    import torch.nn.functional as F

    from hirl_mm.clustering import HierarchicalClustering
    from hirl_mm.models.utils import HierarchicalPrototypeMixin
    if not isinstance(model, HierarchicalPrototypeMixin):
        return
    model.eval()
    with torch.no_grad():
        dim = model.extract_proto_feat(inputs[0][:2]).shape[1]
    model.train()
    g = torch.Generator().manual_seed(SEED)
    sizes = model.num_clusters
    clustering = HierarchicalClustering(
        assignments=torch.randint(sizes[0], (num_images, ), generator=g),
        centroids=[
            F.normalize(torch.randn(m, dim, generator=g), dim=1) for m in sizes
        ],
        parents=[
            torch.randint(m, (n, ), generator=g)
            for n, m in zip(sizes, sizes[1:])
        ],
        distances=[])
    conc = [0.2 + torch.rand(m, generator=g) for m in sizes]
    model.prototypes.update(clustering, 0, conc)


def fill_queues(model, rank, world, global_rows):
    """Full SwAV-style queues: this rank's share of one global queue."""
    import torch
    import torch.nn.functional as F
    from mmpretrain.models.losses import SwAVLoss
    g = torch.Generator().manual_seed(SEED + 1)
    for m in model.modules():
        if isinstance(m, SwAVLoss):
            dim = m.prototypes.weight.shape[1]
            queue = F.normalize(
                torch.randn(
                    len(m.crops_for_assign), global_rows, dim, generator=g),
                dim=2)
            share = global_rows // world
            m.queue = queue[:, rank * share:(rank + 1) * share].clone()
            m.use_queue = True


@contextlib.contextmanager
def row_aligned_draws(local_rows, rank, world):
    """Per-sample draws of the step, row-aligned with the global batch.

    ``torch.randint`` / ``torch.bernoulli`` without a generator and iBOT's
    ``random_block_masks`` draw from a seed per call; a draw with
    ``local_rows`` rows (per view, for the masks) is the rank's rows of the
    same draw for the global batch.
    """
    import numpy as np
    import torch

    import hirl_mm.models.algorithms.ibot as ibot
    randint, bernoulli = torch.randint, torch.bernoulli
    block_masks = ibot.random_block_masks
    calls = itertools.count(SEED + 1000)

    def rows_of(shape, draw):
        gen = torch.Generator().manual_seed(next(calls))
        if len(shape) and shape[0] == local_rows:
            full = draw((local_rows * world, ) + tuple(shape[1:]), gen)
            return full[rank * local_rows:(rank + 1) * local_rows]
        return draw(tuple(shape), gen)

    def aligned_randint(*args, **kwargs):
        if kwargs.get('generator') is not None:
            return randint(*args, **kwargs)
        size = kwargs.pop('size', None) or args[-1]
        args = args[:-1] if size is args[-1] else args
        low, high = (0, args[0]) if len(args) == 1 else args
        device = kwargs.pop('device', None)
        out = rows_of(
            size,
            lambda s, gen: randint(low, high, s, generator=gen, **kwargs))
        return out.to(device) if device is not None else out

    def aligned_bernoulli(p, *args, **kwargs):
        if kwargs.get('generator') is not None or args:
            return bernoulli(p, *args, **kwargs)
        u = rows_of(p.shape, lambda s, gen: torch.rand(s, generator=gen))
        return (u.to(p.device) < p).to(p.dtype)

    def aligned_block_masks(num, *args, **kwargs):
        state = np.random.get_state()
        np.random.seed(next(calls))
        full = block_masks(num * world, *args, **kwargs)  # view by view
        np.random.set_state(state)
        views = num // local_rows
        rows = torch.arange(local_rows)
        return full[torch.cat([
            v * local_rows * world + rank * local_rows + rows
            for v in range(views)
        ])]

    torch.randint, torch.bernoulli = aligned_randint, aligned_bernoulli
    ibot.random_block_masks = aligned_block_masks
    try:
        yield
    finally:
        torch.randint, torch.bernoulli = randint, bernoulli
        ibot.random_block_masks = block_masks


def train_step(cfg, rank, world, batch_size, image_size):
    """Loss terms, each term's rank-averaged gradient (flat) and the model's
    state after one step of this process."""
    import torch
    from mmengine.dist import all_reduce
    from mmengine.registry import FUNCTIONS
    from mmengine.runner import set_random_seed
    global_rows = batch_size * world
    samples = global_batch(cfg, global_rows, image_size)
    model = build_model(cfg, rank, world)
    collate = cfg.train_dataloader.get('collate_fn', {})
    collate = FUNCTIONS.get(collate.get('type', 'pseudo_collate'))
    mine = samples[rank * batch_size:(rank + 1) * batch_size]
    data = model.data_preprocessor(collate(mine), training=True)
    full = model.data_preprocessor(collate(samples), training=False)
    set_tree(model, full['inputs'], global_rows)
    fill_queues(model, rank, world, 36 * global_rows)
    set_random_seed(SEED + 2)
    with row_aligned_draws(batch_size, rank, world):
        losses = model(**data, mode='loss')
    params = [p for p in model.parameters() if p.requires_grad]
    terms, grads = {}, {}
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        value = value if torch.is_tensor(value) else sum(value)
        mean = value.detach().clone()
        all_reduce(mean, op='mean')
        terms[name] = float(mean)
        if not value.requires_grad:
            continue
        g = torch.autograd.grad(
            value, params, retain_graph=True, allow_unused=True)
        flat = torch.cat([
            (gi if gi is not None else torch.zeros_like(p)).flatten()
            for gi, p in zip(g, params)
        ])
        all_reduce(flat, op='mean')
        grads[name] = flat
    state = {
        k: v.detach().clone()
        for k, v in model.state_dict().items() if torch.is_tensor(v)
    }
    return dict(terms=terms, grads=grads, state=state, algorithm=_algo(model))


def _algo(model):
    """The algorithm's class name, and its base's for HIRL."""
    names = [type(model).__name__]
    if hasattr(model, 'base'):
        names.append(type(model.base).__name__)
    return names


def compare(one, many, world):
    """Rows of the report: per loss term and for the state."""
    import torch
    expected = {}
    for name in many['algorithm']:
        expected.update(EXPECTED.get(name, {}))
    skip = expected.get('skip', ())
    scales = expected.get('grad_scale', {})
    rows = []
    for name, ref in one['terms'].items():
        got = many['terms'].get(name)
        row = dict(term=name, loss_1=ref, loss_w=got)
        if name in skip:
            row.update(status='differs by design', why=expected['why'])
            rows.append(row)
            continue
        ok = got is not None and abs(got - ref) <= LOSS_ATOL + \
            LOSS_RTOL * abs(ref)
        if name in one['grads']:
            g1, gw = one['grads'][name], many['grads'][name]
            if scales.get(name) == 'world':
                gw = gw * world
                row['note'] = f'gradient x W ({expected["why"]})'
            norm = float(g1.norm())
            err = float((gw - g1).norm()) / max(norm, 1e-12)
            row.update(grad_norm=norm, grad_rel_err=err)
            ok = ok and err <= GRAD_RTOL
        row['status'] = 'same' if ok else 'DIFFERS'
        rows.append(row)
    worst, worst_key = 0., None
    for key, ref in one['state'].items():
        got = many['state'][key]
        if ref.is_floating_point():
            excess = float(((got - ref).abs() -
                            (STATE_ATOL + STATE_RTOL * ref.abs())).max()) \
                if ref.numel() else -1.
        else:
            excess = 0. if torch.equal(got, ref) else 1.
        if excess > worst:
            worst, worst_key = excess, key
    rows.append(
        dict(
            term='state after the step',
            status='same' if worst_key is None else 'DIFFERS',
            worst=worst_key))
    return rows


# ------------------------------------------------------------- processes
def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _wait_for(path, gone=False):
    while osp.exists(path) == gone:
        time.sleep(0.05)


def run_rank(rank, args, port, tmp):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(args.world_size))
    import torch
    torch.set_num_threads(1)
    import torch.distributed as dist
    quiet()
    dist.init_process_group('gloo')
    for i, path in enumerate(args.configs):
        ref = osp.join(tmp, f'one_{i}.pt')
        _wait_for(ref)
        try:
            many = train_step(
                load_cfg(path, args.cfg_options), rank, args.world_size,
                args.batch_size, args.image_size)
            error = None
        except Exception:  # reported for this config, the next one runs
            import traceback
            many, error = None, traceback.format_exc()
        if rank == 0:
            report = dict(config=path, error=error)
            if many is not None:
                one = torch.load(ref, weights_only=True)
                report['rows'] = compare(one, many, args.world_size)
            with open(osp.join(tmp, 'report.part'), 'w') as f:
                json.dump(report, f)
            os.replace(
                osp.join(tmp, 'report.part'), osp.join(tmp,
                                                       f'report_{i}.json'))
            os.remove(ref)
        dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: gloo's threads may abort there


def check(args):
    """The report of every config: the ranks run while this process
    computes the next one-process reference."""
    import torch
    import torch.multiprocessing as mp
    quiet()
    tmp = tempfile.mkdtemp(prefix='world_size_check_')
    ctx = mp.start_processes(
        run_rank,
        args=(args, _free_port(), tmp),
        nprocs=args.world_size,
        join=False,
        start_method='spawn')
    reports = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, path in enumerate(args.configs):
            one = train_step(
                load_cfg(path, args.cfg_options), 0, 1,
                args.batch_size * args.world_size, args.image_size)
            one.pop('algorithm')
            torch.save(one, osp.join(tmp, f'one_{i}.pt'))
            report = osp.join(tmp, f'report_{i}.json')
            while not osp.exists(report):
                if ctx.join(timeout=0.1):
                    raise RuntimeError('the ranks stopped early')
            with open(report) as f:
                reports.append(json.load(f))
        while not ctx.join(timeout=1):
            pass
    finally:
        torch.set_num_threads(threads)
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
    return reports


def failed(report):
    return report['error'] is not None or any(row['status'] == 'DIFFERS'
                                              for row in report['rows'])


def print_report(reports, world):
    print(f'One step on {world} processes vs one process with the global '
          f'batch (loss rtol {LOSS_RTOL}, gradient rel. L2 {GRAD_RTOL})')
    for report in reports:
        print(f"\n{report['config']}: "
              f"{'FAILED' if failed(report) else 'PASSED'}")
        if report['error']:
            print(report['error'])
            continue
        for row in report['rows']:
            err = row.get('grad_rel_err')
            err = '' if err is None else f' grad rel err {err:.1e}'
            extra = row.get('why') or row.get('note') or row.get('worst') \
                or ''
            print(f"  {row['term']:<24} {row['status']:<18}{err} {extra}")


def main(argv=None):
    args = parse_args(argv)
    if args.world_size < 2:
        raise SystemExit('--world-size must be at least 2.')
    reports = check(args)
    print_report(reports, args.world_size)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(reports, f, indent=1)
    return 1 if any(failed(r) for r in reports) else 0


if __name__ == '__main__':
    sys.exit(main())
