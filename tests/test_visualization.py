import argparse
import glob
import json
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmengine.visualization import TensorboardVisBackend
from mmpretrain.registry import VISUALIZERS
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator
from toy import HIRL_SIMSIAM, toy_cfg

from hirl_mm.visualization import (plot_embedding, plot_prototype_gallery,
                                   plot_prototype_stats, plot_prototype_tree,
                                   read_scalars)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def check_png(path, min_side=200):
    img = cv2.imread(str(path))
    assert img is not None, f'{path} is not an image'
    assert min(img.shape[:2]) >= min_side
    assert img.std() > 5  # not blank


def test_plots_on_toy_data(tmp_path):
    rng = np.random.RandomState(0)
    fine = np.repeat(np.arange(6), 10)
    coarse = fine // 3
    feats = rng.randn(60, 8) + 3 * np.eye(8)[fine]
    xy = plot_embedding(feats, dict(fine=fine, coarse=coarse),
                        dict(fine=None, coarse=['a', 'b']),
                        str(tmp_path / 'tsne.png'))
    assert xy.shape == (60, 2)
    check_png(tmp_path / 'tsne.png')

    paths = np.stack([fine, coarse], axis=1)
    sizes = plot_prototype_tree(paths, [6, 2], coarse, ['a', 'b'],
                                str(tmp_path / 'tree.png'))
    assert sizes[0].tolist() == [10] * 6 and sizes[1].tolist() == [30, 30]
    check_png(tmp_path / 'tree.png')

    imgs = []
    for i in range(60):
        imgs.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(imgs[-1], np.full((16, 16, 3), 4 * i, np.uint8))
    centroids = [np.eye(8)[:6], np.eye(8)[:2]]
    rows = plot_prototype_gallery(
        feats / np.linalg.norm(feats, axis=1, keepdims=True),
        centroids,
        paths,
        imgs,
        str(tmp_path / 'gallery.png'),
        num_protos=2,
        num_images=5)
    assert rows.shape == (4, 5)
    # the nearest images of level-0 prototype c are images of class c
    assert all(fine[i] == fine[rows[0][0]] for i in rows[0])
    check_png(tmp_path / 'gallery.png', min_side=100)


def test_prototype_stats_over_epochs(tmp_path):
    # as mmengine's LocalVisBackend writes them: the logger's records and
    # the prototype hook's carry the epoch; a record without one, its step
    records = [
        dict(loss=1.0, epoch=1, iter=10, step=10),
        {
            'prototypes/level0_nonempty': 90,
            'epoch': 3,
            'step': 21
        },
        {
            'prototypes/level0_nonempty': 70,
            'prototypes/level1_nonempty': 20,
            'prototypes/level0_largest_fraction': 0.05,
            'prototypes/level2_coarse_nmi': 40.0,
            'prototypes/level0_fine_acc': 30.0,
            'prototypes/level0_ari_vs_previous': 60.0,
            'prototypes/seconds_features': 2.0,
            'step': 4
        },  # no epoch: its step
        {
            'prototypes/level0_nonempty': 80,
            'step': 4
        },  # a later record wins
    ]
    path = tmp_path / 'scalars.json'
    path.write_text('\n'.join(json.dumps(r) for r in records) + '\n')
    scalars = read_scalars(str(path), 'prototypes/')
    assert scalars['prototypes/level0_nonempty'] == {3: 90.0, 4: 80.0}
    assert scalars['prototypes/level1_nonempty'] == {4: 20.0}
    assert 'loss' not in scalars
    assert read_scalars(str(path))['loss'] == {1: 1.0}
    assert read_scalars(str(tmp_path / 'missing.json')) == {}

    out = str(tmp_path / 'stats.png')
    assert plot_prototype_stats(scalars, out) == out
    # NMI, ACC, non-empty, largest cluster, ARI: five panels side by side
    img = cv2.imread(out)
    assert img.shape[1] > 4 * img.shape[0]
    check_png(out)
    only_seconds = {'prototypes/seconds_features': {1: 2.0}}
    assert plot_prototype_stats(only_seconds,
                                str(tmp_path / 'none.png')) is None
    assert not (tmp_path / 'none.png').exists()


def test_visualize_tool_on_a_trained_model(tmp_path):
    cfg = toy_cfg(tmp_path, max_epochs=2, warmup_epochs=1)
    Runner.from_cfg(cfg).train()
    cfg.dump(str(tmp_path / 'cfg.py'))
    out = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis', 'visualize.py'),
        str(tmp_path / 'cfg.py'),
        str(tmp_path / 'epoch_2.pth'), '--work-dir',
        str(tmp_path / 'vis')
    ],
                         capture_output=True,
                         text=True,
                         timeout=300,
                         env=dict(__import__('os').environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ('tsne.png', 'prototype_tree.png', 'prototype_gallery.png'):
        check_png(tmp_path / 'vis' / name, min_side=100)


# docs/custom_data.md's switch: --cfg-options cannot add a list item
TENSORBOARD_CFG = """_base_ = {base!r}
visualizer = dict(vis_backends=[
    dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
"""


def test_tensorboard_gets_losses_and_prototypes_on_one_axis(tmp_path):
    config = tmp_path / 'tensorboard.py'
    config.write_text(TENSORBOARD_CFG.format(base=HIRL_SIMSIAM))
    # 30 images in batches of 10: prototypes from the 4th iteration on
    cfg = toy_cfg(
        tmp_path,
        str(config),
        max_epochs=2,
        warmup_epochs=1,
        num_train=2,
        batch_size=10)
    Runner.from_cfg(cfg).train()
    (vis_data, ) = glob.glob(str(tmp_path / '*' / 'vis_data'))
    (events, ) = glob.glob(osp.join(vis_data, 'events.out.tfevents.*'))
    tb = EventAccumulator(events).Reload()

    def steps(tag):
        return [(e.step, e.value) for e in tb.Scalars(tag)]

    assert [s for s, _ in steps('loss')] == list(range(1, 7))
    (nonempty, ) = steps('prototypes/level0_nonempty')
    assert nonempty[0] == 4 and 1 <= nonempty[1] <= 15
    # the hook's epoch beside the logger's: mmengine's 1-based one
    assert {v for s, v in steps('epoch') if s == 4} == {2}
    # and scalars.json as without TensorBoard, by epoch
    local = read_scalars(osp.join(vis_data, 'scalars.json'), 'prototypes/')
    assert local['prototypes/level0_nonempty'] == {2: nonempty[1]}


def test_tensorboard_from_the_command_line(tmp_path):
    """The command-line form: the one backend replaced (no scalars.json)."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args([
        '--cfg-options', 'visualizer.vis_backends.0.type=TensorboardVisBackend'
    ])
    cfg = Config.fromfile(HIRL_SIMSIAM)
    cfg.merge_from_dict(args.cfg_options)
    vis = VISUALIZERS.build(
        dict(cfg.visualizer, name='cli', save_dir=str(tmp_path)))
    assert vis.get_backend('LocalVisBackend') is None
    assert isinstance(
        vis.get_backend('TensorboardVisBackend'), TensorboardVisBackend)
    vis.add_scalars({'loss': 1.0}, step=1)
    vis.close()
    assert glob.glob(str(tmp_path / 'vis_data' / 'events.out.tfevents.*'))
