"""Pictures of a pre-trained model: t-SNE (fine / coarse colours), the
learned prototype tree and a gallery of each level's prototypes.

    python tools/analysis/visualize.py CONFIG CHECKPOINT --work-dir DIR

CONFIG is the pre-training config; the training set is read with its
deterministic ``feat_pipeline`` (or the prototype hook's pipeline).
"""
import argparse
import os

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

import hirl_mm
from hirl_mm.visualization import visualize_hirl


def main():
    # the checkpoint is read with weights_only=True: mmengine's globals go
    # on the allow-list by this explicit call
    hirl_mm.register_safe_globals()
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument(
        '--work-dir', default='work_dirs/visualize', help='picture folder')
    parser.add_argument(
        '--max-samples', type=int, default=2000, help='images in the t-SNE')
    args = parser.parse_args()

    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.get('data_preprocessor')))
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    pipeline = cfg.get('feat_pipeline') or next(
        h.pipeline
        for h in cfg.custom_hooks if h.type == 'HierarchicalPrototypeHook')
    os.makedirs(args.work_dir, exist_ok=True)
    files = visualize_hirl(
        model.eval(),
        dict(cfg.train_dataloader.dataset, pipeline=pipeline),
        args.work_dir,
        max_samples=args.max_samples)
    for name, path in files.items():
        print(f'{name}: {path}')


if __name__ == '__main__':
    main()
