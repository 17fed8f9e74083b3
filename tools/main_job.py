"""The README's main job: base SSL vs HIRL on embedded Fashion-MNIST.

Trains MMPretrain's SimSiam and HIRL-SimSiam (ResNet-18, 32 px) on a seeded,
class-balanced subset, as ``tools/train.py METHOD_CONFIG --cfg-options ...``
does (the job's settings are ``--cfg-options``, :func:`run_options`),
prints the final losses and the prototype tree, then evaluates each final
checkpoint through MMPretrain's test loop, as
``tools/test.py configs/downstream/knn/knn_resnet18_fmnist.py CKPT`` does:
the registered ``KNNAccuracy`` (weighted kNN top-1, training subset as the
memory bank) and ``ClusteringMetric`` (k-means NMI / AMI / ARI / Hungarian
ACC) on the test split at the fine (10 classes) and coarse (4 classes)
level. The learned prototype tree is scored against both labellings. The
prototype hook runs with its own defaults (the HIRL reference's k-means).

The report (``report.md`` and ``report.json`` in the work dir, also
printed) gives the exact command line, every method's mean ± std over the
seeds, and, for each method with prototypes against its base method
(HIRL-X vs X, HCSC vs MoCo v2), the paired difference per seed and its
mean. Each run's folder holds its pictures: t-SNE, prototype tree (node
area = cluster size), prototype gallery and the hook's ``prototypes/``
scalars over epochs.

``--data-root`` also takes an ImageNet-style folder: ``train/<class>/`` and
``val/<class>/`` images, the same class folders in both. The methods then
train on every ``train/`` image with the pre-processing of the custom-folder
config (``FOLDER_CONFIG``: 64 px crops, ImageNet mean / std); the kNN bank is
``train/``, the queries and the k-means are ``val/``, scored against the
class folders (one label level), and so is the learned tree.
"""
import argparse
import json
import os
import os.path as osp
import shlex
import sys
import time
import traceback
from datetime import datetime
from typing import List, Optional, Sequence

import numpy as np
from _cli import apply_cfg_options, build_runner, replaced, test
from _image_folder import FOLDER_METHODS, data_root_folder, folder_options
from _report import LEVELS, write_report
from mmengine.config import Config, DictAction

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
KNN_CONFIG = 'configs/downstream/knn/knn_resnet18_fmnist.py'


def subset_size(value: str) -> Optional[int]:
    """``--subset``: a positive image count, or 0 / 'all' for all 60k."""
    if value.lower() in ('0', 'all'):
        return None
    try:
        size = int(value)
    except ValueError:
        size = -1
    if size < 0:
        raise argparse.ArgumentTypeError(
            f"expected a number of images, 0 or 'all', got {value!r}")
    return size


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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
        type=subset_size,
        default=4000,
        help="training images (class-balanced); 0 or 'all': all 60k")
    parser.add_argument(
        '--epochs', type=int, default=8, help='training epochs')
    parser.add_argument(
        '--warmup',
        type=int,
        default=3,
        help='first epoch with prototypes (HIRL, HCSC)')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='the prototypes are rebuilt every N epochs')
    parser.add_argument(
        '--feature-source',
        choices=['extract', 'memory_bank'],
        default='extract',
        help="what the prototype hook clusters: 'extract' re-embeds the "
        "training images, 'memory_bank' the features the training steps "
        'recorded')
    parser.add_argument(
        '--bank-momentum',
        type=float,
        default=0.,
        help='memory_bank: a row moves toward each new record by 1 - this '
        "(NPID's bank, e.g. 0.5); 0 overwrites it (DeepCluster-v2's)")
    parser.add_argument(
        '--bank-views',
        choices=['first', 'all'],
        default='first',
        help="memory_bank: record the step's first view, or the mean of all "
        'its global views')
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        default=[0],
        help='one run per seed and method')
    parser.add_argument(
        '--knn-k', type=int, default=20, help='neighbours of the kNN vote')
    parser.add_argument(
        '--device',
        choices=['cpu', 'cuda'],
        default='cpu',
        help='cpu hides every GPU; cuda trains and evaluates on GPU 0')
    parser.add_argument(
        '--amp',
        choices=['none', 'fp16', 'bf16'],
        default='none',
        help='mixed-precision training (AmpOptimWrapper; --device cuda)')
    parser.add_argument(
        '--data-root',
        help='folder with the four Fashion-MNIST idx files (default: the '
        "data set's, /usr/share/datasets/fashion-mnist), or an ImageNet-"
        'style folder: train/<class>/ and val/<class>/ images')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='key=value overrides of every training config, applied last')
    parser.add_argument(
        '--merge',
        nargs='+',
        metavar='REPORT_JSON',
        help='train nothing: one report (paired differences included) of '
        'the runs in these report.json files, e.g. of main jobs run side '
        'by side with the same setting; --methods / --seeds default to '
        'theirs')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='reuse the finished runs of --work-dir (e.g. after a failed '
        'run): a run folder with result.json is reported as it is, one '
        'with its final checkpoint is evaluated, not trained again')
    args = parser.parse_args(argv)
    args.folder = None
    if args.data_root is not None:
        try:
            args.folder = data_root_folder(args.data_root)
        except ValueError as e:
            parser.error(f'--data-root: {e}')
    if args.folder:
        given = sys.argv[1:] if argv is None else argv
        if any(a.split('=')[0] == '--subset' for a in given):
            parser.error('--subset counts Fashion-MNIST images; a folder '
                         'trains on all of its train/ images')
        others = [m for m in args.methods if m not in FOLDER_METHODS]
        if others:
            parser.error(f'--data-root {args.data_root} (a folder): '
                         f'{others} train on their own pipelines; a folder '
                         f'trains {list(FOLDER_METHODS)}')
    if args.amp != 'none' and args.device != 'cuda':
        parser.error(f'--amp {args.amp} needs --device cuda (mmengine\'s '
                     'AmpOptimWrapper runs on GPUs only)')
    for flag in ('epochs', 'interval', 'knn_k'):
        if getattr(args, flag) < 1:
            parser.error(f'--{flag.replace("_", "-")} must be >= 1')
    return args


def check_folder_fits(args: argparse.Namespace) -> None:
    """Stop before any training when the folder cannot feed a method's
    run: fewer ``train/`` images than one batch (the configs drop the last,
    incomplete batch) or than the prototypes of the tree's first level.

    Args:
        args (argparse.Namespace): From :func:`parse_args`, with a folder.

    Raises:
        ValueError: naming the method, the sizes and the option to change.
    """
    images = args.folder['train']
    for name in args.methods:
        cfg = build_cfg(name, args, args.seeds[0])
        batch = cfg.train_dataloader.batch_size
        if cfg.train_dataloader.get('drop_last') and images < batch:
            raise ValueError(
                f'{name}: {images} train/ images make no batch of {batch} '
                '(the incomplete last batch is dropped); set --cfg-options '
                f'train_dataloader.batch_size=N with N <= {images}')
        clusters = cfg.model.get('num_clusters')
        if clusters and images < clusters[0]:
            raise ValueError(
                f'{name}: {images} train/ images cannot fill the prototype '
                f'tree {list(clusters)} (more level-0 prototypes than '
                'images); set --cfg-options "model.num_clusters=[...]" with '
                f'a first count <= {images}')


def run_name(name: str, seed: int) -> str:
    """The run's folder name: ``hirl-simsiam_seed0``."""
    return f'{name}_seed{seed}'.replace(' ', '').lower()


def run_options(cfg: Config, name: str, args: argparse.Namespace,
                seed: int) -> dict:
    """The main job's settings of one run as ``--cfg-options``: budget
    (subset, epochs, cosine schedule, warm-up, interval), data source,
    device, precision and seed.

    Args:
        cfg (Config): The method's config, as its file gives it.
        name (str): A key of ``METHODS``.
        args (argparse.Namespace): From :func:`parse_args`.
        seed (int): The run's seed.

    Returns:
        dict: Keys and values for ``Config.merge_from_dict``.
    """
    options = {'work_dir': osp.join(args.work_dir, run_name(name, seed))}
    if args.folder:
        options.update(folder_options(cfg, args.data_root))
    else:
        options['train_dataloader.dataset.subset_size'] = args.subset
        if args.data_root:
            options['train_dataloader.dataset.source_root'] = args.data_root
            # the kNN monitor's subsets are of the embedded copy: off on
            # another source (the job scores every run with kNN at the end)
            options.update(
                val_dataloader=None, val_evaluator=None, val_cfg=None)
    options['train_cfg.max_epochs'] = args.epochs
    # the lr's (and DINO's weight decay's) cosine ends with the last epoch
    for i, scheduler in enumerate(cfg.param_scheduler):
        if 'T_max' in scheduler:
            begin = scheduler.get('begin', 0)
            options[f'param_scheduler.{i}.T_max'] = args.epochs - begin
            options[f'param_scheduler.{i}.end'] = args.epochs
    options['randomness.seed'] = seed
    options['default_hooks.logger.interval'] = 50
    for i, hook in enumerate(cfg.get('custom_hooks', [])):
        if hook.type == 'HierarchicalPrototypeHook':
            options.update({
                f'custom_hooks.{i}.{key}': value
                for key, value in (('warmup_epochs',
                                    args.warmup), ('interval', args.interval),
                                   ('feature_source', args.feature_source),
                                   ('bank_momentum', args.bank_momentum),
                                   ('bank_views', args.bank_views))
            })
    if args.device == 'cuda':
        options['env_cfg.dist_cfg.backend'] = 'nccl'
        options['train_dataloader.pin_memory'] = True
    if args.amp != 'none':
        options['optim_wrapper.type'] = 'AmpOptimWrapper'
        options['optim_wrapper.dtype'] = dict(
            fp16='float16', bf16='bfloat16')[args.amp]
    return options


def build_cfg(name: str, args: argparse.Namespace, seed: int) -> Config:
    """The training config of one run: the method's config, then
    :func:`run_options`, then ``--cfg-options``, both merged as
    ``tools/train.py`` merges its ``--cfg-options``.

    Args:
        name (str): A key of ``METHODS``.
        args (argparse.Namespace): From :func:`parse_args`.
        seed (int): The run's seed.

    Returns:
        Config: For :func:`_cli.train`.
    """
    cfg = Config.fromfile(osp.join(ROOT, METHODS[name]))
    cfg.merge_from_dict(run_options(cfg, name, args, seed))
    return apply_cfg_options(cfg, args)


def train(cfg: Config):
    """Train one run as ``tools/train.py`` does; returns its runner, final
    losses and seconds of training."""
    runner = build_runner(cfg)
    start = time.time()
    runner.train()
    losses = {
        k[len('train/'):]: round(float(v.current()), 4)
        for k, v in runner.message_hub.log_scalars.items()
        if k.startswith('train/loss')
    }
    return runner, losses, time.time() - start


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
    the whole test split (a folder's ``val/``) as queries, both through the
    deterministic ``feat_pipeline``, and the two registered metrics; as
    ``tools/test.py KNN_CONFIG CHECKPOINT --cfg-options ...`` builds it.

    Args:
        cfg (Config): The training config of the run.
        checkpoint (str): Its final checkpoint.
        knn_k (int): Neighbours of the kNN vote.

    Returns:
        Config: For :func:`_cli.test`; its work dir is the run's ``knn``
        sub-folder.
    """
    test_cfg = Config.fromfile(osp.join(ROOT, KNN_CONFIG))
    preprocessor = cfg.model.get('data_preprocessor') or cfg.data_preprocessor
    bank = dict(cfg.train_dataloader.dataset, pipeline=cfg.feat_pipeline)
    query = dict(bank, data_prefix='val') if bank['type'] == 'CustomDataset' \
        else dict(bank, split='test', subset_size=None)
    test_cfg.merge_from_dict({
        'model.backbone':
        replaced(feature_backbone(cfg.model)),
        'data_preprocessor':
        replaced(
            dict(
                type='ClsDataPreprocessor',
                mean=preprocessor.get('mean'),
                std=preprocessor.get('std'),
                to_rgb=preprocessor.get('to_rgb', False))),
        'test_dataloader.dataset':
        replaced(dict(type='KNNDataset', bank=bank, query=query)),
        'test_evaluator': [
            dict(type='KNNAccuracy', ks=[knn_k]),
            dict(
                type='ClusteringMetric',
                seed=0,
                kmeans_cfg=dict(init='kmeans++')),
        ],
        'load_from':
        checkpoint,
        'work_dir':
        osp.join(cfg.work_dir, 'knn'),
        # mmengine looks a Runner's logger and message hub up by this name:
        # unique, so runs started within a second do not share them
        'experiment_name': (f'{osp.basename(cfg.work_dir)}_knn_'
                            f'{datetime.now():%Y%m%d_%H%M%S_%f}'),
    })
    return test_cfg


def evaluate(cfg: Config, checkpoint: str, knn_k: int) -> dict:
    """kNN top-1 and clustering scores of a checkpoint, per label level,
    through ``tools/test.py``'s test loop and registered metrics.

    Args:
        cfg (Config): The training config of the run.
        checkpoint (str): Its final checkpoint.
        knn_k (int): Neighbours of the kNN vote.

    Returns:
        dict: ``knn_top1_{level}`` and ``{nmi,ami,ari,acc}_{level}`` of
        each level the data set labels (a folder: fine alone).
    """
    metrics = test(knn_test_cfg(cfg, checkpoint, knn_k))
    row = {}
    for level in LEVELS:
        if f'knn/top1_k{knn_k}_{level}' not in metrics:
            continue
        row[f'knn_top1_{level}'] = metrics[f'knn/top1_k{knn_k}_{level}']
        row.update({
            key[len('clustering/'):]: value
            for key, value in metrics.items()
            if key.startswith('clustering/') and key.endswith(f'_{level}')
        })
    return row


def tree_summary(model, dataset) -> dict:
    """Cluster sizes of the learned tree and its agreement with labels."""
    from hirl_mm.evaluation import prototype_tree_scores
    protos = model.prototypes
    paths = protos.expand_paths(protos.assignments).cpu().numpy()
    labels = dict(fine=dataset.get_gt_labels())
    if hasattr(dataset, 'get_coarse_labels'):
        labels['coarse'] = dataset.get_coarse_labels()
    sizes = [np.bincount(p) for p in paths.T]
    return dict(
        images=len(paths),
        clusters_per_level=list(protos.num_clusters),
        non_empty_per_level=[int((s > 0).sum()) for s in sizes],
        largest_percent_per_level=[
            round(100 * float(s.max() / len(paths)), 2) for s in sizes
        ],
        scores={
            k: round(v, 2)
            for k, v in prototype_tree_scores(
                paths, labels, metrics=('nmi', 'acc')).items()
        })


def run_one(name: str, args: argparse.Namespace, seed: int) -> dict:
    """Train, evaluate and picture one method with one seed; the row is
    also written to the run's ``result.json``."""
    from _pictures import (draw_pictures, online_evaluation_picture,
                           prototype_stats_picture)
    from mmengine.runner import find_latest_checkpoint
    cfg = build_cfg(name, args, seed)
    result_file = osp.join(cfg.work_dir, 'result.json')
    final = osp.join(cfg.work_dir, f'epoch_{args.epochs}.pth')
    if args.resume and osp.isfile(result_file):
        print(f'[{name} seed {seed}] --resume: {result_file}', flush=True)
        with open(result_file) as f:
            return json.load(f)
    if args.resume and osp.isfile(final):
        print(f'[{name} seed {seed}] --resume: evaluating {final}', flush=True)
        runner = build_runner(cfg)
        runner.load_checkpoint(final)
        losses, seconds = {}, None
    else:
        runner, losses, seconds = train(cfg)
    model = runner.model
    row = dict(
        method=name,
        seed=seed,
        train_seconds=None if seconds is None else round(seconds),
        final_losses=losses)
    if hasattr(model, 'prototypes'):
        row['prototypes'] = tree_summary(model,
                                         runner.train_dataloader.dataset)
    print(
        f'[{name} seed {seed}] losses {losses} '
        f'prototypes {row.get("prototypes")}',
        flush=True)
    checkpoint = find_latest_checkpoint(runner.work_dir)
    row.update(evaluate(cfg, checkpoint, args.knn_k))
    row['pictures'] = draw_pictures(
        model, dict(cfg.train_dataloader.dataset, pipeline=cfg.feat_pipeline),
        cfg.work_dir)
    if hasattr(model, 'prototypes'):
        picture = prototype_stats_picture(
            runner, osp.join(cfg.work_dir, 'prototype_stats.png'))
        if picture:
            row['pictures']['prototype_stats'] = picture
        else:
            row['notes'] = [
                'the run logged no `prototypes/` scalars: no '
                'prototype_stats.png'
            ]
    picture = online_evaluation_picture(
        runner, osp.join(cfg.work_dir, 'online_evaluation.png'))
    if picture:
        row['pictures']['online_evaluation'] = picture
    with open(result_file, 'w') as f:
        json.dump(row, f, indent=2)
    return row


def describe_setting(args: argparse.Namespace) -> str:
    """The report's sentence on what the runs are: data, budget, features,
    seeds, device and the evaluation."""
    subset = 'all 60000' if args.subset is None else args.subset
    features = '' if args.feature_source == 'extract' else \
        f' (features: {args.feature_source})'
    momentum = getattr(args, 'bank_momentum', 0)
    if features and (momentum
                     or getattr(args, 'bank_views', 'first') != 'first'):
        features = (f'{features[:-1]}, momentum {momentum:g}, views '
                    f'{args.bank_views})')
    folder = getattr(args, 'folder', None)
    if folder:
        data = (f'{args.data_root}: {folder["train"]} train/ images in '
                f'{len(folder["classes"])} classes')
        queries = (f'the train/ images as the bank, the {folder["val"]} '
                   'val/ images as queries), k-means on the val/ features '
                   f'({len(folder["classes"])} clusters, one per class)')
    else:
        data = f'Fashion-MNIST, {subset} training images'
        queries = ('training images as the bank, the 10k test images as '
                   'queries), k-means on the test features (10 fine / 4 '
                   'coarse clusters)')
    return (
        f'{data}, {args.epochs} '
        f'epochs, prototypes from epoch {args.warmup} every '
        f'{args.interval}{features}, seeds {args.seeds}, device {args.device}'
        f'{"" if args.amp == "none" else ", AMP " + args.amp}; '
        f'kNN k={args.knn_k} ({queries}; mean ± std (ddof 0) over seeds')


def report(results: List[dict],
           args: argparse.Namespace,
           command: str,
           setting: Optional[str] = None,
           failed: Sequence[dict] = ()) -> str:
    """Write ``report.md`` and ``report.json`` of the runs into
    ``--work-dir`` and print the markdown (:func:`_report.write_report`).

    Args:
        results (list[dict]): The finished runs.
        args (argparse.Namespace): From :func:`parse_args`.
        command (str): The command line.
        setting (str, optional): What the runs are. Defaults to
            :func:`describe_setting` of ``args``.
        failed (Sequence[dict]): The runs that stopped with an error.
            Defaults to ().

    Returns:
        str: The markdown.
    """
    return write_report(results, args.methods, args.seeds, command, setting
                        or describe_setting(args), args.work_dir, failed)


def merge_reports(args: argparse.Namespace, argv: List[str]) -> str:
    """One report of the runs of several ``report.json`` files."""
    reports = []
    for path in args.merge:
        with open(path) as f:
            reports.append(json.load(f))
    settings = {r['setting'].split('seeds')[0] for r in reports}
    if len(settings) > 1:
        raise ValueError('--merge: the reports were made with different '
                         f'settings: {sorted(settings)}')
    runs = [run for r in reports for run in r['runs']]
    if '--methods' not in argv:
        args.methods = list(dict.fromkeys(run['method'] for run in runs))
    if '--seeds' not in argv:
        args.seeds = sorted({run['seed'] for run in runs})
    runs = [
        r for r in runs
        if r['method'] in args.methods and r['seed'] in args.seeds
    ]
    command = ' + '.join(r['command'] for r in reports)
    command += ', merged by ' + shlex.join(
        [osp.relpath(sys.executable), *sys.argv])
    # the reports' own setting (budget, features, device), not --merge's
    # defaults; only the seeds change
    head, tail = reports[0]['setting'].split('seeds', 1)
    setting = f'{head}seeds {args.seeds}{tail.split("]", 1)[1]}'
    failed = [
        f for r in reports for f in r.get('failed', [])
        if f['method'] in args.methods and f['seed'] in args.seeds
    ]
    return report(runs, args, command, setting, failed)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.merge:
        merge_reports(args, sys.argv[1:] if argv is None else argv)
        return
    if args.device == 'cpu':
        # read when CUDA initialises, i.e. before any torch.cuda call
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    if args.folder:
        try:
            check_folder_fits(args)
        except ValueError as e:
            sys.exit(f'--data-root {args.data_root}: {e}')
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda: torch sees no GPU '
                 f'(torch {torch.__version__}, CUDA {torch.version.cuda}).')

    import hirl_mm

    # the test loop reads the checkpoints with weights_only=True: mmengine's
    # globals go on the allow-list by this explicit call
    hirl_mm.register_safe_globals()
    command = shlex.join([osp.relpath(sys.executable), *sys.argv])
    results, failed = [], []
    for seed in args.seeds:
        for name in args.methods:
            try:
                results.append(run_one(name, args, seed))
            except Exception as e:  # the other runs go on
                traceback.print_exc()
                failed.append(
                    dict(method=name, seed=seed, error=f'{e!r}'[:500]))
    report(results, args, command, failed=failed)
    if failed:
        sys.exit(f'{len(failed)} run(s) failed: ' +
                 ', '.join(f'{r["method"]} seed {r["seed"]}' for r in failed) +
                 '; report.md lists them (--resume reruns only those)')


if __name__ == '__main__':
    main()
