"""SwAV's codes on 2 processes: balanced per GPU vs over the global batch.

Trains a SwAV-family config (SwAV, HIRL-SwAV, SS-PRL) for ``--iters``
steps on ``--world-size`` gloo processes (SyncBN everywhere, gradients
averaged as DDP does, the config's optimizer at its constant lr, no queue,
nothing frozen), once with every Sinkhorn of the model balanced per GPU
(MMPretrain's ``distributed_sinkhorn``) and once over the global batch
(``GlobalSwAVLoss``'s ``sinkhorn``), same seeds and data. Every Sinkhorn
call of a step is recorded:

- ``agree``: the fraction of rows whose code argmax equals that of the
  global-batch codes of the same scores (1 by construction for 'global');
- ``used``: the fraction of prototypes that are the argmax of some row of
  the global batch.

After the last step, rank 0 assigns ``--held-out`` test images to the
global prototypes (argmax of the projection's scores): ``held_out_used``
(fraction of prototypes used) and ``held_out_perplexity`` (exp of the
entropy of those assignments, / K).

Usage::

    python benchmarks/sinkhorn_world_size.py \
        configs/swav/swav_resnet18_1xb64-mcrop-2-2-coslr-10e_fmnist.py \
        --iters 60 --seeds 0 1 2 \
        --out benchmarks/results/sinkhorn_world_size_swav.json
"""
import argparse
import json
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'dev'))
sys.path.insert(0, osp.join(ROOT, 'tools'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--world-size', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--held-out', type=int, default=512)
    parser.add_argument('--out')
    return parser.parse_args(argv)


def _recorded(fn, stats):
    """``fn`` (a Sinkhorn) that also records its codes against the global
    batch's codes of the same scores."""
    import torch
    from mmengine.dist import all_gather, all_reduce

    from hirl_mm.models.losses.swav_loss import sinkhorn

    def wrapper(scores, num_iters, epsilon):
        used = fn(scores, num_iters, epsilon)
        ref = sinkhorn(scores, num_iters, epsilon)
        agree = (used.argmax(1) == ref.argmax(1)).float().mean()
        all_reduce(agree, op='mean')
        top = torch.cat(all_gather(used.argmax(1)))
        stats.append(
            dict(
                agree=float(agree),
                used=len(torch.unique(top)) / scores.shape[1]))
        return used

    return wrapper


def run_rank(rank, args, port, seed, mode, out):
    os.environ.update(
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(args.world_size))
    import numpy as np
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    import world_size_check as wsc
    from mmengine.dist import all_reduce
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import FUNCTIONS
    from mmengine.runner import set_random_seed
    from mmpretrain.models.losses.swav_loss import distributed_sinkhorn
    from mmpretrain.registry import DATASETS

    import hirl_mm.models.losses.swav_loss as swav_loss
    wsc.quiet()
    dist.init_process_group('gloo')
    world = args.world_size
    stats = []
    base = swav_loss.sinkhorn if mode == 'global' else (
        lambda s, n, e: distributed_sinkhorn(s, n, world, e))
    swav_loss.sinkhorn = _recorded(base, stats)

    cfg = wsc.load_cfg(args.config)
    cfg.model.setdefault('init_cfg', None)
    model = wsc.build_model(cfg, rank, world)
    set_random_seed(seed)
    model.init_weights()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    collate = FUNCTIONS.get(
        cfg.train_dataloader.get('collate_fn', {}).get('type',
                                                       'pseudo_collate'))
    rng = np.random.RandomState(seed)
    global_rows = args.batch_size * world
    first = rng.permutation(len(dataset))
    held_out = first[-args.held_out:]
    needed = args.iters * global_rows
    # a small data set is cycled through; its held-out images were seen
    seen = needed + args.held_out > len(dataset)
    order = first[:needed] if not seen else np.concatenate(
        [first] +
        [rng.permutation(len(dataset)) for _ in range(needed // len(first))])
    losses = []
    for it in range(args.iters):
        ids = order[it * global_rows:(it + 1) * global_rows]
        mine = ids[rank * args.batch_size:(rank + 1) * args.batch_size]
        data = model.data_preprocessor(
            collate([dataset[int(i)] for i in mine]), training=True)
        terms = model(**data, mode='loss')
        loss = sum(v for k, v in terms.items() if 'loss' in k)
        optim.optimizer.zero_grad()
        loss.backward()
        for p in model.parameters():
            if p.grad is not None:
                all_reduce(p.grad, op='mean')
        optim.optimizer.step()
        mean = loss.detach().clone()
        all_reduce(mean, op='mean')
        losses.append(float(mean))

    result = dict(
        seed=seed,
        mode=mode,
        loss_last10=float(np.mean(losses[-10:])),
        agree=float(np.mean([s['agree'] for s in stats])),
        used=float(np.mean([s['used'] for s in stats])),
        calls=len(stats))
    if rank == 0:
        result.update(_held_out(model, dataset, held_out, collate))
        result['held_out_seen_in_training'] = bool(seen)
        with open(out, 'w') as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


def _held_out(model, dataset, ids, collate):
    """Hard assignments of images to the global prototypes."""
    import torch
    import torch.nn.functional as F
    net = getattr(model, 'base', model)  # HIRL's base
    head = net.head.loss_module
    model.eval()
    counts = torch.zeros(head.prototypes.out_features)
    with torch.no_grad():
        for chunk in range(0, len(ids), 64):
            batch = collate([dataset[int(i)] for i in ids[chunk:chunk + 64]])
            inputs = model.data_preprocessor(batch, training=False)['inputs']
            z = net.neck([net.backbone(inputs[0])])  # B x D
            w = F.normalize(head.prototypes.weight, dim=1)
            top = (F.normalize(z, dim=1) @ w.t()).argmax(1)
            counts += torch.bincount(top, minlength=len(counts)).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return dict(
        held_out_used=float((counts > 0).float().mean()),
        held_out_perplexity=float(entropy.exp()) / len(counts))


def main(argv=None):
    import numpy as np
    import torch.multiprocessing as mp
    from world_size_check import _free_port
    args = parse_args(argv)
    tmp = os.environ.get('TMPDIR', '/tmp')
    rows = []
    for seed in args.seeds:
        for mode in ('per_gpu', 'global'):
            out = osp.join(tmp, f'sinkhorn_{seed}_{mode}.json')
            mp.spawn(
                run_rank,
                args=(args, _free_port(), seed, mode, out),
                nprocs=args.world_size)
            with open(out) as f:
                rows.append(json.load(f))
            print(rows[-1], flush=True)
    keys = ('agree', 'used', 'held_out_used', 'held_out_perplexity',
            'loss_last10')
    summary = {}
    for mode in ('per_gpu', 'global'):
        mine = [r for r in rows if r['mode'] == mode]
        summary[mode] = {
            k: (float(np.mean([r[k] for r in mine])),
                float(np.std([r[k] for r in mine])))
            for k in keys
        }
    diffs = {
        k: [
            g[k] - p[k]
            for g, p in zip([r for r in rows if r['mode'] == 'global'],
                            [r for r in rows if r['mode'] == 'per_gpu'])
        ]
        for k in keys
    }
    print(f'{args.config}: {args.world_size} x {args.batch_size} images, '
          f'{args.iters} steps, seeds {args.seeds} (mean +- std)')
    print('| | ' + ' | '.join(keys) + ' |')
    print('|---' * (len(keys) + 1) + '|')
    for mode, vals in summary.items():
        print(f'| {mode} | ' + ' | '.join(f'{m:.3f} +- {s:.3f}'
                                          for m, s in vals.values()) + ' |')
    print('| global - per_gpu (paired) | ' +
          ' | '.join(f'{np.mean(v):+.3f} +- {np.std(v):.3f}'
                     for v in diffs.values()) + ' |')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(
                dict(
                    config=args.config,
                    world_size=args.world_size,
                    batch_size=args.batch_size,
                    iters=args.iters,
                    runs=rows,
                    summary=summary),
                f,
                indent=1)


if __name__ == '__main__':
    main()
