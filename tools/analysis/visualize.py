"""Pictures of a pre-trained model: t-SNE, prototype tree, prototype gallery
and prototype statistics.

    python tools/analysis/visualize.py CONFIG CHECKPOINT --work-dir DIR

CONFIG is the pre-training config; its training set is read with the
config's deterministic ``feat_pipeline`` (or the prototype hook's
pipeline). Written to DIR:

- tsne.png: t-SNE of the backbone features, a panel per label the images
  carry (fine, coarse); a data set without labels is coloured by the top
  level's prototype.
- prototype_tree.png (a model with a prototype tree): levels as rows, node
  area = cluster size, colour = majority coarse label (grey without coarse
  labels).
- prototype_gallery.png (a model with a prototype tree): the 4 largest
  clusters of each level, a row each, captioned "level l, #c: n images"
  (level, cluster id, cluster size); a row shows up to 8 of the cluster's
  own images, nearest its prototype first; no image is shown twice.
- prototype_stats.png: the prototype hook's statistics over the epochs
  (tree vs labels, non-empty clusters, largest cluster, stability), from
  the run's log: every CHECKPOINT_DIR/*/vis_data/scalars.json, or
  --scalars.

A picture that cannot be drawn is named with the reason.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

import hirl_mm
from hirl_mm.visualization import read_run_scalars, read_scalars

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from _pictures import draw_pictures  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the pre-training config')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/visualize',
        help='picture folder (default: %(default)s)')
    parser.add_argument(
        '--max-samples',
        type=int,
        default=2000,
        help='images in the t-SNE (default: %(default)s)')
    parser.add_argument(
        '--scalars',
        nargs='+',
        help='the run\'s vis_data/scalars.json file(s), oldest first '
        '(default: every one under the checkpoint\'s folder)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value (e.g. '
        'train_dataloader.dataset.data_root=data/mine)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for path in args.scalars or []:
        if not osp.isfile(path):
            raise FileNotFoundError(f'--scalars: {path} does not exist')
    # the checkpoint is read with weights_only=True: mmengine's globals go
    # on the allow-list by this explicit call
    hirl_mm.register_safe_globals()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.get('data_preprocessor')))
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    pipeline = cfg.get('feat_pipeline') or next(
        (h.pipeline for h in cfg.get('custom_hooks', [])
         if h.type == 'HierarchicalPrototypeHook'), None)
    if pipeline is None:
        raise ValueError(
            f'{args.config} has neither a `feat_pipeline` nor a '
            'HierarchicalPrototypeHook with a pipeline: give one with '
            '--cfg-options or in the config.')
    if args.scalars:
        scalars = {}
        for path in args.scalars:
            for key, series in read_scalars(path, 'prototypes/').items():
                scalars.setdefault(key, {}).update(series)
    else:
        scalars = read_run_scalars(
            osp.dirname(osp.abspath(args.checkpoint)), 'prototypes/')
    os.makedirs(args.work_dir, exist_ok=True)
    notes = {}
    files = draw_pictures(
        model.eval(),
        dict(cfg.train_dataloader.dataset, pipeline=pipeline),
        args.work_dir,
        max_samples=args.max_samples,
        scalars=scalars,
        notes=notes)
    if 'prototype_stats' not in files and not args.scalars and \
            not scalars:
        notes['prototype_stats'] = (
            'no `prototypes/` scalars in '
            f'{osp.dirname(osp.abspath(args.checkpoint))}/*/vis_data/'
            'scalars.json (give the run\'s log with --scalars)')
    for name in ('tsne', 'tree', 'gallery', 'prototype_stats'):
        if name in files:
            note = f' ({notes[name]})' if name in notes else ''
            print(f'{name}: {files[name]}{note}')
        else:
            print(f'{name}: not written: {notes.get(name, "")}')


if __name__ == '__main__':
    main()
