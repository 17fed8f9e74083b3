"""What costs the memory bank's trees their agreement with the labels?

The bank (``feature_source='memory_bank'``) differs from the re-embedding
(``'extract'``) in three ways: it holds augmented views, projected in
training mode (batch statistics), by weights that move through the epoch.
With the weights of a finished run held fixed, this embeds the run's
training images under each of the first two differences and builds the
hook's tree ([100, 20, 5], the hook's k-means defaults) from each:

- ``extract``: eval mode, unaugmented (the hook's re-embedding)
- ``eval, 1 view``: eval mode, one augmented view (the training pipeline)
- ``train, 1 view``: training mode, one augmented view (the bank, minus
  the drift of the weights)
- ``train, mean of 2 views``: the two views' unit projections averaged
- ``eval, mean of 8 views``: eight augmented views averaged
- ``train, 2 views, momentum m over E epochs``: the momentum bank's rows
  (``bank_momentum=m``, ``bank_views='all'``) after E epochs of recording,
  minus the drift: each epoch's mean of the two views' unit projections
  (fresh augmentations) moves a row by ``v <- normalize(m v + (1 - m) f)``,
  for m = 0.5 (NPID's, the default) and 0.9 from the same E epochs

and scores each tree against the labels (NMI, level 0 vs fine and coarse,
top level vs coarse) and its largest root. Runs are main-job run folders
(their config and checkpoint); prints mean ± std over them (a markdown
table).

    python tools/analysis/bank_diagnosis.py \
        work_dirs/protocol_hirl_simsiam/hirl-simsiam_seed{0,1,2}
"""
import argparse
import glob
import os.path as osp
import sys

import numpy as np
import torch
import torch.nn.functional as F

VARIANTS = {  # name: (mode, views per pass, passes)
    'eval, 1 view': ('eval', 1, 1),
    'train, 1 view': ('train', 1, 1),
    'train, mean of 2 views': ('train', 2, 1),
    'eval, mean of 8 views': ('eval', 2, 4),
}
# the memory bank's momentum rows, from one series of training-mode epochs
MOMENTA = (0.5, 0.9)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='main-job run folders')
    parser.add_argument(
        '--checkpoint', default='epoch_*.pth', help='the newest match is used')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--momentum-epochs',
        type=int,
        default=5,
        help='epochs of recording of the momentum rows (0: none)')
    parser.add_argument(
        '--skip',
        nargs='*',
        default=[],
        choices=list(VARIANTS),
        metavar='VARIANT',
        help=f'variants left out, of {list(VARIANTS)}')
    args = parser.parse_args(argv)
    if args.momentum_epochs < 0:
        parser.error('--momentum-epochs must be >= 0, got '
                     f'{args.momentum_epochs}')
    return args


def load_run(run: str, checkpoint: str):
    """The run's HIRL model (fixed weights) and config."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS
    configs = glob.glob(osp.join(run, '*.py'))
    ckpts = sorted(glob.glob(osp.join(run, checkpoint)), key=osp.getmtime)
    if len(configs) != 1 or not ckpts:
        raise FileNotFoundError(
            f'{run} needs one config (*.py) and a checkpoint '
            f'({checkpoint}); found {configs} and {ckpts}.')
    cfg = Config.fromfile(configs[0])
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    if not hasattr(model, 'extract_proto_feat'):
        raise TypeError(f'{configs[0]} is not a model with prototypes.')
    load_checkpoint(model, ckpts[-1], map_location='cpu', logger='silent')
    return model, cfg


@torch.no_grad()
def augmented(model, loader, views: int, passes: int) -> torch.Tensor:
    """Sum of ``views x passes`` unit projections of augmented views of
    each image, in sample order."""
    total = None
    for _ in range(passes):
        out, ids = [], []
        for data in loader:
            data = model.data_preprocessor(data, training=True)
            out.append(
                sum(
                    F.normalize(model.extract_proto_feat(v), dim=1)
                    for v in data['inputs'][:views]))
            ids.append(
                torch.as_tensor([d.sample_idx for d in data['data_samples']]))
        feats = torch.cat(out)[torch.cat(ids).argsort()]
        total = feats if total is None else total + feats
    return total


def diagnose(run: str, args) -> dict:
    """NMI scores and the largest root of each variant's tree."""
    from mmengine.runner import Runner
    from sklearn.metrics import normalized_mutual_info_score as nmi

    from hirl_mm.clustering import hierarchical_kmeans
    from hirl_mm.engine import extract_feature_shard
    from hirl_mm.engine.hooks.prototype_hook import DEFAULT_KMEANS_CFG
    torch.manual_seed(args.seed)
    model, cfg = load_run(run, args.checkpoint)
    hook = [
        h for h in cfg.custom_hooks if h.type == 'HierarchicalPrototypeHook'
    ][0]
    dataset = cfg.train_dataloader.dataset

    def loader(pipeline, shuffle):
        return Runner.build_dataloader(
            dict(
                dataset=dict(dataset, pipeline=pipeline),
                batch_size=cfg.train_dataloader.batch_size,
                num_workers=2,
                sampler=dict(
                    type='DefaultSampler',
                    shuffle=shuffle,
                    seed=args.seed,
                    round_up=False),
                collate_fn=dict(type='default_collate')))

    plain = loader(hook.pipeline, False)
    train = loader(dataset.pipeline, True)
    labels = dict(
        fine=np.asarray(plain.dataset.get_gt_labels()),
        coarse=np.asarray(plain.dataset.get_coarse_labels()))
    model.eval()
    feats, ids = extract_feature_shard(model.extract_proto_feat, plain, model)
    variants = {'extract': feats[ids.argsort()]}
    for name, (mode, views, passes) in VARIANTS.items():
        if name not in args.skip:
            model.train(mode == 'train')
            variants[name] = augmented(model, train, views, passes)
    model.train()
    banks = {m: None for m in MOMENTA}  # N x D, sample order
    for _ in range(args.momentum_epochs):
        step = F.normalize(augmented(model, train, 2, 1), dim=1)
        for m, row in banks.items():
            banks[m] = step if row is None else F.normalize(
                m * row + (1 - m) * step, dim=1)
    for m, row in banks.items():
        if row is not None:
            variants[f'train, 2 views, momentum {m} over '
                     f'{args.momentum_epochs} epochs'] = row
    kmeans_cfg = dict(DEFAULT_KMEANS_CFG, **hook.get('kmeans_cfg', {}))
    rows = {}
    for name, feats in variants.items():
        tree = hierarchical_kmeans(
            F.normalize(feats.float(), dim=1), model.num_clusters,
            **kmeans_cfg)
        leaf, top = tree.assignments, tree.assignments
        for parents in tree.parents:
            top = parents[top]
        rows[name] = {
            'level 0 vs fine': 100 * nmi(labels['fine'], leaf),
            'level 0 vs coarse': 100 * nmi(labels['coarse'], leaf),
            'top level vs coarse': 100 * nmi(labels['coarse'], top),
            'largest root (%)': 100 * np.bincount(top).max() / len(top),
        }
    return rows


def main(argv=None):
    args = parse_args(argv)
    from mmengine.registry import init_default_scope

    import hirl_mm  # noqa: F401
    init_default_scope('mmpretrain')
    per_run = [diagnose(run, args) for run in args.runs]
    names = list(per_run[0])
    metrics = list(per_run[0][names[0]])
    print(f'fixed weights of {len(per_run)} run(s): {", ".join(args.runs)}; '
          'NMI (%) of the tree against the labels, mean ± std (ddof 0)')
    print('| features | ' + ' | '.join(metrics) + ' |')
    print('|---' * (len(metrics) + 1) + '|')
    for name in names:
        cells = []
        for m in metrics:
            v = np.array([r[name][m] for r in per_run])
            cells.append(f'{v.mean():.1f} ± {v.std():.1f}')
        print(f'| {name} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    sys.exit(main())
