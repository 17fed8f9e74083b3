"""Why a prototype tree degenerates: k-means variants on fixed features.

Trains HIRL-SimSiam with the main job's budget up to its first clustering
(``--epochs`` of the ``--schedule-epochs`` cosine schedule, no prototypes
yet, i.e. what the hook clusters at epoch ``--epochs``), embeds the training
images once (the prototype branch, ``model.extract_proto_feat``, and the
pooled backbone) and builds the tree [100, 20, 5] with faiss k-means under
each variant: initialisation (faiss' random sample, the HIRL reference, vs
k-means++ D^2 sampling), upper levels clustering the level-below centroids
unweighted (the reference) or weighted by their number of images, and the
clustered space. Prints a table and writes ``diagnosis.json``; the features
are kept in ``features.npz`` and reused by a second call.

    python tools/analysis/tree_diagnosis.py --work-dir work_dirs/tree_diagnosis
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/hirl/hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py'
NUM_CLUSTERS = (100, 20, 5)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/tree_diagnosis')
    parser.add_argument('--subset', type=int, default=4000)
    parser.add_argument(
        '--epochs', type=int, default=3, help='epochs trained (the warm-up)')
    parser.add_argument(
        '--schedule-epochs',
        type=int,
        default=8,
        help='length of the cosine lr schedule (the main job\'s epochs)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--seeds',
        type=int,
        default=3,
        help='k-means seeds per variant (seed s uses s + level per level)')
    return parser.parse_args(argv)


def train_cfg(args):
    """HIRL-SimSiam at the main job's budget (``--subset`` images, a cosine
    schedule of ``--schedule-epochs``) stopped after ``--epochs``, before
    its first clustering; ``--cfg-options`` as ``tools/train.py`` takes
    them."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, CONFIG))
    schedule = args.schedule_epochs
    options = {
        'work_dir': osp.join(args.work_dir, f'hirl-simsiam_seed{args.seed}'),
        'train_dataloader.dataset.subset_size': args.subset,
        'train_cfg.max_epochs': args.epochs,
        'param_scheduler.0.T_max': schedule,
        'param_scheduler.0.end': schedule,
        'randomness.seed': args.seed,
        'default_hooks.logger.interval': 50,
    }
    hook, = [
        i for i, h in enumerate(cfg.custom_hooks)
        if h.type == 'HierarchicalPrototypeHook'
    ]
    options.update({
        f'custom_hooks.{hook}.{key}': value
        for key, value in (('warmup_epochs', schedule + 1), ('interval', 1),
                           ('feature_source', 'extract'),
                           ('bank_momentum', 0.), ('bank_views', 'first'))
    })
    cfg.merge_from_dict(options)
    return cfg


def features(args) -> dict:
    """Prototype-branch and backbone features of the training subset after
    ``args.epochs`` epochs of HIRL-SimSiam's warm-up, with their labels."""
    cache = osp.join(args.work_dir, 'features.npz')
    if osp.isfile(cache):
        return dict(np.load(cache))
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from _cli import train

    import hirl_mm  # noqa: F401
    from hirl_mm.engine import extract_backbone_features, extract_features
    cfg = train_cfg(args)
    start = time.time()
    runner = train(cfg)
    print(
        f'trained {args.epochs} epochs in {time.time() - start:.0f} s',
        flush=True)
    model = runner.model.eval()
    loader = dict(
        dataset=dict(cfg.train_dataloader.dataset, pipeline=cfg.feat_pipeline),
        batch_size=256,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
        collate_fn=dict(type='default_collate'))
    proto = extract_features(
        model.extract_proto_feat, loader, model=model, dst=None)['feats']
    backbone = extract_backbone_features(model, loader)
    out = dict(
        projection=proto.numpy().astype(np.float32),
        backbone=backbone['feats'].astype(np.float32),
        fine=backbone['labels'],
        coarse=backbone['coarse_labels'])
    np.savez(cache, **out)
    return out


def kmeans(points, k, init, seed, weights=None, nredo=5, niter=20):
    """faiss k-means as ``hierarchical_kmeans`` runs it (best of ``nredo``),
    with faiss' random or seeded k-means++ (weighted D^2) initialisation.
    """
    import faiss

    from hirl_mm.clustering import kmeans_plusplus
    if init == 'random':  # as hierarchical_kmeans and the reference
        km = faiss.Kmeans(
            points.shape[1],
            k,
            niter=niter,
            nredo=nredo,
            seed=seed,
            max_points_per_centroid=1000,
            min_points_per_centroid=10)
        km.train(points, weights=weights)
        return km
    best = None
    for redo in range(nredo):
        km = faiss.Kmeans(
            points.shape[1],
            k,
            niter=niter,
            seed=seed * 1000 + redo,
            max_points_per_centroid=1000,
            min_points_per_centroid=10)
        src = points
        if weights is not None:  # D^2 sampling of the weighted mass
            src = np.repeat(points, weights.astype(int), axis=0)
        km.train(
            points,
            weights=weights,
            init_centroids=kmeans_plusplus(src, k, seed * 1000 + redo))
        if best is None or km.obj[-1] < best.obj[-1]:
            best = km
    return best


def tree(feats, init, weighted, seed):
    """The [100, 20, 5] tree: per-image paths and the level-0 objective."""
    points = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    assign, paths, objective, weights = None, [], None, None
    for lvl, k in enumerate(NUM_CLUSTERS):
        km = kmeans(points, k, init, seed + lvl, weights if weighted else None)
        dist, labels = km.index.search(points, 1)
        labels = labels[:, 0]
        if lvl == 0:
            assign = labels
            objective = float(dist.sum() / len(points))
        else:
            assign = labels[assign]
        paths.append(assign)
        weights = np.bincount(assign, minlength=k).astype(np.float32)
        cent = km.centroids
        points = cent / np.maximum(
            np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    return np.stack(paths, 1), objective


def seed_outlierness(feats, init, seed, k=NUM_CLUSTERS[0], nn=10):
    """Percentile (0-100) of the initial level-0 seeds' mean distance to
    their ``nn`` nearest neighbours among all points: 50 for a uniform
    draw, near 100 when the seeds are outliers."""
    import faiss

    from hirl_mm.clustering import kmeans_plusplus
    points = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points)
    dist, ids = index.search(points, nn + 1)
    spread = dist[:, 1:].mean(1)
    rank = spread.argsort().argsort() * 100.0 / (len(points) - 1)
    if init == 'kmeans++':
        seeds = kmeans_plusplus(points, k, seed * 1000)
        _, idx = index.search(seeds, 1)
        idx = idx[:, 0]
    else:
        idx = np.random.RandomState(seed).permutation(len(points))[:k]
    return float(np.median(rank[idx])), float((rank[idx] >= 90).mean() * 100)


def describe(paths, objective, labels) -> dict:
    from hirl_mm.evaluation import clustering_scores
    row = dict(objective=round(objective, 4))
    for lvl in range(paths.shape[1]):
        sizes = np.bincount(paths[:, lvl])
        sizes = sizes[sizes > 0]
        row[f'L{lvl}_non_empty'] = int(len(sizes))
        row[f'L{lvl}_largest_pct'] = round(100 * sizes.max() / len(paths), 1)
        row[f'L{lvl}_tiny'] = int((sizes < 5).sum())  # clusters of < 5 imgs
        for name, lab in labels.items():
            scores = clustering_scores(lab, paths[:, lvl], metrics=('nmi', ))
            row[f'L{lvl}_nmi_{name}'] = round(scores['nmi'], 1)
    return row


def main():
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    data = features(args)
    labels = dict(fine=data['fine'], coarse=data['coarse'])
    rows = []
    for space in ('projection', 'backbone'):
        for init in ('random', 'kmeans++'):
            median, top10 = seed_outlierness(data[space], init, 0)
            for weighted in (False, True):
                start = time.time()
                per_seed = [
                    describe(*tree(data[space], init, weighted, s), labels)
                    for s in range(args.seeds)
                ]
                row = {
                    k: round(float(np.mean([r[k] for r in per_seed])), 2)
                    for k in per_seed[0]
                }
                row.update(
                    space=space,
                    init=init,
                    upper='weighted' if weighted else 'unweighted',
                    seed_nn_percentile=round(median, 1),
                    seeds_in_top10pct_outliers=round(top10, 1),
                    seconds=round((time.time() - start) / args.seeds, 2),
                    per_seed=per_seed)
                rows.append(row)
                print(
                    json.dumps({
                        k: v
                        for k, v in row.items() if k != 'per_seed'
                    }),
                    flush=True)
    with open(osp.join(args.work_dir, 'diagnosis.json'), 'w') as f:
        json.dump(dict(args=vars(args), rows=rows), f, indent=2)
    cols = ['seed_nn_percentile', 'seeds_in_top10pct_outliers', 'objective']
    for lvl in range(len(NUM_CLUSTERS)):
        cols += [
            f'L{lvl}_non_empty', f'L{lvl}_largest_pct', f'L{lvl}_tiny',
            f'L{lvl}_nmi_fine', f'L{lvl}_nmi_coarse'
        ]
    print('| space | init | upper levels | ' + ' | '.join(cols) + ' |')
    print('|---' * (len(cols) + 3) + '|')
    for r in rows:
        print(f'| {r["space"]} | {r["init"]} | {r["upper"]} | ' +
              ' | '.join(f'{r[c]:g}' for c in cols) + ' |')


if __name__ == '__main__':
    main()
