"""The README's main job: base SSL vs HIRL on embedded Fashion-MNIST.

Trains MMPretrain's SimSiam and HIRL-SimSiam (ResNet-18, 32 px) on a seeded,
class-balanced subset, prints the final losses and the prototype tree, then
evaluates each final checkpoint through MMPretrain's test loop, as
``tools/test.py configs/benchmarks/knn/knn_resnet18_fmnist.py CKPT`` does:
the registered ``KNNAccuracy`` (weighted kNN top-1, training subset as the
memory bank) and ``ClusteringMetric`` (k-means NMI / AMI / ARI / Hungarian
ACC) on the test split at the fine (10 classes) and coarse (4 classes)
level. HIRL's learned prototype tree is scored against both labellings.
The table is printed and written as ``report.json`` and ``report.md`` in
the work dir, next to each run's pictures (t-SNE, prototype tree,
prototype gallery).
"""
import argparse
import json
import os.path as osp
import time
from datetime import datetime

import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner, find_latest_checkpoint

import hirl_mm
from hirl_mm.evaluation import prototype_tree_scores
from hirl_mm.visualization import visualize_hirl

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
METHODS = {
    'SimSiam': 'configs/simsiam/simsiam_resnet18_1xb64-coslr-10e_fmnist.py',
    'HIRL-SimSiam':
    'configs/hirl/hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py',
    'MoCo v2': 'configs/mocov2/mocov2_resnet18_1xb64-coslr-10e_fmnist.py',
    'HIRL-MoCo v2':
    'configs/hirl/hirl-mocov2_resnet18_1xb64-coslr-10e_fmnist.py',
    'SwAV': 'configs/swav/swav_resnet18_1xb64-mcrop-2-2-coslr-10e_fmnist.py',
    'HIRL-SwAV':
    'configs/hirl/hirl-swav_resnet18_1xb64-mcrop-2-2-coslr-10e_fmnist.py',
    'MoCo v3': 'configs/mocov3/mocov3_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'HIRL-MoCo v3':
    'configs/hirl/hirl-mocov3_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'HCSC': 'configs/hcsc/hcsc_resnet18_1xb64-coslr-10e_fmnist.py',
    'HCSC multi-crop':
    'configs/hcsc/hcsc_resnet18_1xb64-mcrop-1-4-coslr-10e_fmnist.py',
    'DINO': 'configs/dino/dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'HIRL-DINO':
    'configs/hirl/hirl-dino_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'iBOT': 'configs/ibot/ibot_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
    'HIRL-iBOT':
    'configs/hirl/hirl-ibot_vit-tiny-p4_1xb64-coslr-10e_fmnist.py',
}
# The evaluation: the trained backbone is swapped into its model, the
# training subset and the test split into its KNNDataset.
KNN_CONFIG = 'configs/benchmarks/knn/knn_resnet18_fmnist.py'
LEVELS = ('fine', 'coarse')


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--work-dir',
        default='work_dirs/main_job',
        help='one sub-folder per run, report.json and report.md')
    parser.add_argument(
        '--methods',
        nargs='+',
        default=list(METHODS)[:2],
        choices=list(METHODS),
        metavar='METHOD',
        help=f'methods to train, of {list(METHODS)}')
    parser.add_argument(
        '--subset',
        type=int,
        default=4000,
        help='training images (class-balanced)')
    parser.add_argument(
        '--epochs', type=int, default=8, help='training epochs')
    parser.add_argument(
        '--warmup', type=int, default=3, help='HIRL warm-up epochs')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='HIRL re-clusters every N epochs')
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        default=[0],
        help='one run per seed and method')
    parser.add_argument(
        '--knn-k', type=int, default=20, help='neighbours of the kNN vote')
    return parser.parse_args()


def train(name, args, seed):
    cfg = Config.fromfile(osp.join(ROOT, METHODS[name]))
    cfg.work_dir = osp.join(args.work_dir,
                            f'{name}_seed{seed}'.replace(' ', '').lower())
    cfg.train_dataloader.dataset.subset_size = args.subset
    cfg.train_cfg.max_epochs = args.epochs
    for scheduler in cfg.param_scheduler:  # lr (and DINO's weight decay)
        if 'T_max' in scheduler:
            begin = scheduler.get('begin', 0)
            scheduler.update(T_max=args.epochs - begin, end=args.epochs)
    cfg.randomness = dict(seed=seed)
    cfg.default_hooks.logger.interval = 50
    for hook in cfg.get('custom_hooks', []):
        if hook.type == 'HierarchicalPrototypeHook':
            hook.warmup_epochs = args.warmup
            hook.interval = args.interval
            hook.kmeans_cfg = dict(init='kmeans++')
    runner = Runner.from_cfg(cfg)
    start = time.time()
    runner.train()
    losses = {
        k[len('train/'):]: round(float(v.current()), 4)
        for k, v in runner.message_hub.log_scalars.items()
        if k.startswith('train/loss')
    }
    return runner, cfg, losses, time.time() - start


def feature_backbone(model: dict) -> dict:
    """The trained backbone's config, as the test model builds it.

    Args:
        model (dict): The training config's ``model``; HIRL's ``base``
            holds the backbone.

    Returns:
        dict: A backbone config whose last output
        :class:`PooledFeatureModel` pools into the algorithm's
        ``extract_feat`` features.
    """
    model = model.get('base', model)
    backbone = dict(model['backbone'])
    if model['type'] == 'iBOT':
        # iBOT trains on all tokens; its extract_feat is the class token
        backbone['out_type'] = 'cls_token'
    return backbone


def knn_test_cfg(cfg: Config, checkpoint: str, knn_k: int) -> Config:
    """The test config that evaluates one trained model.

    ``KNN_CONFIG`` with the trained backbone in its
    :class:`PooledFeatureModel` (loaded from ``checkpoint``'s
    ``backbone.*``), the run's training subset as the kNN memory bank and
    the whole test split as queries, both through the deterministic
    ``feat_pipeline``, and the two registered metrics.

    Args:
        cfg (Config): The training config of the run.
        checkpoint (str): Its final checkpoint.
        knn_k (int): Neighbours of the kNN vote.

    Returns:
        Config: For ``Runner.from_cfg(...).test()``; its work dir is the
        run's ``knn`` sub-folder.
    """
    test = Config.fromfile(osp.join(ROOT, KNN_CONFIG))
    test.model.backbone = feature_backbone(cfg.model)
    preprocessor = cfg.model.get('data_preprocessor') or cfg.data_preprocessor
    test.data_preprocessor = dict(
        type='ClsDataPreprocessor',
        mean=preprocessor.get('mean'),
        std=preprocessor.get('std'),
        to_rgb=preprocessor.get('to_rgb', False))
    bank = dict(cfg.train_dataloader.dataset, pipeline=cfg.feat_pipeline)
    test.test_dataloader.dataset = dict(
        type='KNNDataset',
        bank=bank,
        query=dict(bank, split='test', subset_size=None))
    test.test_evaluator = [
        dict(type='KNNAccuracy', ks=[knn_k]),
        dict(
            type='ClusteringMetric', seed=0, kmeans_cfg=dict(init='kmeans++')),
    ]
    test.load_from = checkpoint
    test.work_dir = osp.join(cfg.work_dir, 'knn')
    # mmengine looks a Runner's logger and message hub up by this name:
    # unique, so runs started within a second do not share them
    test.experiment_name = (f'{osp.basename(cfg.work_dir)}_knn_'
                            f'{datetime.now():%Y%m%d_%H%M%S_%f}')
    return test


def evaluate(cfg: Config, checkpoint: str, knn_k: int) -> dict:
    """kNN top-1 and clustering scores of a checkpoint, per label level.

    Args:
        cfg (Config): The training config of the run.
        checkpoint (str): Its final checkpoint.
        knn_k (int): Neighbours of the kNN vote.

    Returns:
        dict: ``knn_top1_{level}`` and ``{nmi,ami,ari,acc}_{level}``.
    """
    metrics = Runner.from_cfg(knn_test_cfg(cfg, checkpoint, knn_k)).test()
    row = {}
    for level in LEVELS:
        row[f'knn_top1_{level}'] = metrics[f'knn/top1_k{knn_k}_{level}']
        row.update({
            key[len('clustering/'):]: value
            for key, value in metrics.items()
            if key.startswith('clustering/') and key.endswith(f'_{level}')
        })
    return row


def tree_summary(model, dataset):
    """Cluster counts of the learned tree and its agreement with labels."""
    protos = model.prototypes
    paths = protos.expand_paths(protos.assignments).cpu().numpy()
    labels = dict(
        fine=dataset.get_gt_labels(), coarse=dataset.get_coarse_labels())
    return dict(
        images=len(paths),
        clusters_per_level=protos.num_clusters,
        non_empty_per_level=[len(np.unique(p)) for p in paths.T],
        scores={
            k: round(v, 2)
            for k, v in prototype_tree_scores(paths, labels).items()
            if k.endswith(('nmi', 'acc'))
        })


def main():
    # the test loop reads the checkpoints with weights_only=True: mmengine's
    # globals go on the allow-list by this explicit call
    hirl_mm.register_safe_globals()
    args = parse_args()
    results = []
    for seed in args.seeds:
        for name in args.methods:
            runner, cfg, losses, seconds = train(name, args, seed)
            model = runner.model
            row = dict(
                method=name,
                seed=seed,
                train_seconds=round(seconds),
                final_losses=losses)
            if hasattr(model, 'prototypes'):
                row['prototypes'] = tree_summary(
                    model, runner.train_dataloader.dataset)
            print(
                f'[{name} seed {seed}] losses {losses} '
                f'prototypes {row.get("prototypes")}',
                flush=True)
            checkpoint = find_latest_checkpoint(runner.work_dir)
            row.update(evaluate(cfg, checkpoint, args.knn_k))
            row['pictures'] = visualize_hirl(
                model,
                dict(cfg.train_dataloader.dataset, pipeline=cfg.feat_pipeline),
                cfg.work_dir)
            results.append(row)
    report(results, args)


def report(results, args):
    cols = [
        f'{m}_{lvl}' for lvl in LEVELS
        for m in ('knn_top1', 'nmi', 'ami', 'ari', 'acc')
    ]
    lines = [
        '| method | ' + ' | '.join(cols) + ' |', '|---' * (len(cols) + 1) + '|'
    ]
    summary = {}
    for name in args.methods:
        rows = [r for r in results if r['method'] == name]
        stats = {
            c: (float(np.mean([r[c] for r in rows])),
                float(np.std([r[c] for r in rows])))
            for c in cols
        }
        summary[name] = stats
        cells = [
            f'{m:.2f} ± {s:.2f}' if len(rows) > 1 else f'{m:.2f}'
            for m, s in stats.values()
        ]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    for r in results:
        if 'prototypes' in r:
            tree = r['prototypes']
            lines.append(
                f'\n{r["method"]} seed {r["seed"]}: prototype tree '
                f'{tree["non_empty_per_level"]} non-empty clusters of '
                f'{tree["clusters_per_level"]}; vs labels: ' +
                ', '.join(f'{k} {v:.1f}' for k, v in tree['scores'].items()))
    table = '\n'.join(lines)
    setting = (f'Fashion-MNIST, {args.subset} training images, {args.epochs} '
               f'epochs, seeds {args.seeds}, kNN k={args.knn_k}, '
               'k-means on test features (10 fine / 4 coarse clusters)')
    print('\n' + setting + '\n' + table)
    with open(osp.join(args.work_dir, 'report.json'), 'w') as f:
        json.dump(
            dict(setting=setting, runs=results, summary=summary), f, indent=2)
    with open(osp.join(args.work_dir, 'report.md'), 'w') as f:
        f.write(setting + '\n\n' + table + '\n')


if __name__ == '__main__':
    main()
