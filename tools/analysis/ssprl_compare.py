"""SwAV vs SS-PRL (vs HIRL-SwAV) on the embedded photo mosaics.

Each method pre-trains on the same mosaics with the same budget through
``tools/train.py``; then the multi-label linear probe (frozen backbone,
BCE) of every checkpoint is trained and scored (mAP, macro P / R / F1 at
0.5) on the held-out test mosaics. ``random`` probes an untrained backbone.
Prints a table and writes ``results.json`` into the work dir::

    OMP_NUM_THREADS=1 python tools/analysis/ssprl_compare.py \
        --epochs 3 --num-train 640
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Optional

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = dict(
    swav='configs/swav/swav_resnet18_1xb32-mcrop-2-4-coslr-10e_mosaics.py',
    ssprl='configs/ssprl/'
    'ssprl_resnet18_1xb32-mcrop-2-4-pyramid-2-3-coslr-10e_mosaics.py',
    hirl_swav='configs/hirl/'
    'hirl-swav_resnet18_1xb32-mcrop-2-4-coslr-10e_mosaics.py')
PROBE = ('configs/downstream/multilabel/'
         'resnet18_multilabel-linear-coslr-20e_mosaics.py')
METRICS = ('multi-label/mAP', 'multi-label/precision', 'multi-label/recall',
           'multi-label/f1-score')


def hook_index(config: str, hook_type: str) -> int:
    """Position of the ``hook_type`` hook in the config's ``custom_hooks``.

    ``--cfg-options`` reaches list items by position only; looking the hook
    up by its type keeps this script right when a config adds a hook.

    Args:
        config (str): Config path, relative to the repository root.
        hook_type (str): Registered hook name.

    Returns:
        int: Index into ``custom_hooks``.
    """
    hooks = Config.fromfile(osp.join(ROOT, config)).get('custom_hooks', [])
    found = [i for i, h in enumerate(hooks) if h.get('type') == hook_type]
    if len(found) != 1:
        raise ValueError(f'{config} has {len(found)} {hook_type} hooks in '
                         'custom_hooks, expected one.')
    return found[0]


def train(config: str,
          work_dir: str,
          options: list,
          pretrained: Optional[str] = None) -> float:
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', work_dir
    ]
    if pretrained:
        cmd += ['--pretrained', pretrained]
    cmd += ['--cfg-options'] + options
    print('$', ' '.join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.time() - start


def last_metrics(work_dir: str) -> dict:
    """The probe's final validation metrics from its scalars.json."""
    files = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'No scalars.json under {work_dir}.')
    found = {}
    with open(files[-1]) as f:
        for line in f:
            row = json.loads(line)
            if METRICS[0] in row:
                found = row
    if not found:
        raise RuntimeError(f'No {METRICS[0]} in {files[-1]}.')
    return {k: found[k] for k in METRICS if k in found}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--methods',
        nargs='+',
        default=['random', 'swav', 'ssprl', 'hirl_swav'],
        choices=['random'] + list(CONFIGS))
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument(
        '--num-train',
        type=int,
        default=640,
        help='pre-training mosaics (the first N of the set)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=1,
        help='HIRL-SwAV: epochs before the first clustering')
    parser.add_argument('--probe-epochs', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-dir', default='work_dirs/ssprl_compare')
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    e = args.epochs
    results = {}
    for method in args.methods:
        wd = osp.abspath(osp.join(args.work_dir, method))
        ckpt, seconds = '', 0.
        if method != 'random':
            options = [
                f'train_cfg.max_epochs={e}', f'param_scheduler.0.T_max={e}',
                f'param_scheduler.0.end={e}',
                f'train_dataloader.dataset.num_train={args.num_train}',
                f'randomness.seed={args.seed}'
            ]
            if method == 'hirl_swav':
                hook = hook_index(CONFIGS[method], 'HierarchicalPrototypeHook')
                options.append(
                    f'custom_hooks.{hook}.warmup_epochs={args.warmup}')
            seconds = train(CONFIGS[method], wd, options)
            ckpt = osp.join(wd, f'epoch_{e}.pth')
        p = args.probe_epochs
        options = [
            f'train_cfg.max_epochs={p}', f'train_cfg.val_interval={p}',
            f'param_scheduler.0.T_max={p}', f'param_scheduler.0.end={p}',
            f'randomness.seed={args.seed}'
        ]
        if not ckpt:
            options.append('model.backbone.init_cfg=None')
        probe_wd = osp.join(wd, 'probe')
        probe_seconds = train(PROBE, probe_wd, options, pretrained=ckpt)
        results[method] = dict(
            last_metrics(probe_wd),
            pretrain_s=round(seconds, 1),
            probe_s=round(probe_seconds, 1))
        with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
            json.dump(dict(args=vars(args), results=results), f, indent=1)
    print('| method | mAP | precision | recall | F1 | pre-training (s) |')
    print('|---|---|---|---|---|---|')
    for method, r in results.items():
        row = [f'{r.get(k, float("nan")):.2f}' for k in METRICS]
        print(f'| {method} | ' + ' | '.join(row) + f' | {r["pretrain_s"]} |')


if __name__ == '__main__':
    main()
