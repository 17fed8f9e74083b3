import argparse
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmengine.visualization import TensorboardVisBackend
from mmpretrain.registry import VISUALIZERS
from tensorboard.backend.event_processing.event_accumulator import \
    EventAccumulator
from toy import HIRL_SIMSIAM, toy_cfg

from hirl_mm.visualization import (gallery_rows, plot_embedding,
                                   plot_prototype_gallery,
                                   plot_prototype_stats, plot_prototype_tree,
                                   read_run_scalars, read_scalars,
                                   visualize_hirl)

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
    assert [len(r) for r in rows] == [5] * 4
    # the nearest images of level-0 prototype c are images of class c
    assert all(fine[i] == fine[rows[0][0]] for i in rows[0])
    check_png(tmp_path / 'gallery.png', min_side=100)


def test_gallery_rows_show_each_image_once_and_no_more_than_a_cluster():
    rng = np.random.RandomState(0)
    # level 0: clusters of 5, 3 and 12 images; level 1: {0, 1} and {2}
    fine = np.repeat([0, 1, 2], [5, 3, 12])
    paths = np.stack([fine, np.array([0, 0, 1])[fine]], axis=1)
    centroids = [np.eye(4)[:3], np.eye(4)[:2]]
    feats = np.eye(4)[fine] + 0.3 * rng.rand(20, 4)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    rows = gallery_rows(feats, centroids, paths, num_protos=3, num_images=8)
    # a cluster of 12 shows 8 images, one of 5 its 5, one of 3 its 3; level
    # 1's clusters only their images not shown above: 4 of the 12, and
    # none of {0, 1}'s 8 (no row)
    assert [(lvl, c, len(r)) for lvl, c, r in rows] == [(0, 2, 8), (0, 0, 5),
                                                        (0, 1, 3), (1, 1, 4)]
    shown = np.concatenate([r for _, _, r in rows])
    assert len(set(shown.tolist())) == len(shown)  # no image twice
    for lvl, c, row in rows:
        assert (paths[row, lvl] == c).all()  # the cluster's own images
        sim = feats[row] @ centroids[lvl][c]
        assert (np.diff(sim) <= 0).all()  # nearest first
    with pytest.raises(ValueError, match='20 features but 3 prototype'):
        gallery_rows(feats, centroids, paths[:3])


def test_tree_without_coarse_labels(tmp_path):
    fine = np.repeat(np.arange(4), 5)
    paths = np.stack([fine, fine // 2], axis=1)
    sizes = plot_prototype_tree(paths, [6, 2], None, None,
                                str(tmp_path / 'tree.png'))
    assert sizes[0].tolist() == [5, 5, 5, 5, 0, 0]
    check_png(tmp_path / 'tree.png')


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


def test_stats_over_epochs_have_integer_ticks(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(plt, 'close', figures.append)
    scalars = {'prototypes/level0_nonempty': {3: 90.0, 4: 80.0, 5: 85.0}}
    plot_prototype_stats(scalars, str(tmp_path / 'stats.png'))
    (ax, ) = figures[0].axes
    assert ax.get_xticks().tolist() == [3, 4, 5]
    # one epoch only: still a whole epoch, not 1.9, 1.925, ...
    one = {'prototypes/level0_nonempty': {2: 90.0}}
    plot_prototype_stats(one, str(tmp_path / 'one.png'))
    (ax, ) = figures[1].axes
    assert ax.get_xticks().tolist() == [2]
    # many: integer ticks
    many = {'prototypes/level0_nonempty': {e: 1.0 for e in range(1, 201)}}
    plot_prototype_stats(many, str(tmp_path / 'many.png'))
    (ax, ) = figures[2].axes
    assert all(t == int(t) for t in ax.get_xticks())


def test_a_runs_scalars_over_its_starts(tmp_path):
    """A resumed run logs into a second timestamp folder: both are read,
    the later one winning."""
    for stamp, records in (('20240101_000000', [{
            'prototypes/level0_nonempty': 5,
            'epoch': 2
    }, {
            'prototypes/level0_nonempty': 6,
            'epoch': 3
    }]), ('20240102_000000', [{
            'prototypes/level0_nonempty': 7,
            'epoch': 3
    }])):
        vis = tmp_path / stamp / 'vis_data'
        vis.mkdir(parents=True)
        (vis / 'scalars.json').write_text('\n'.join(
            json.dumps(r) for r in records))
    assert read_run_scalars(str(tmp_path), 'prototypes/') == {
        'prototypes/level0_nonempty': {
            2: 5.0,
            3: 7.0
        }
    }
    assert read_run_scalars(str(tmp_path / 'none')) == {}


def test_pictures_of_arrays(tmp_path):
    """The library draws from features and labels; the reasons it gives
    for what it draws without labels."""
    rng = np.random.RandomState(0)
    fine = np.repeat(np.arange(4), 6)
    feats = rng.randn(24, 8) + 3 * np.eye(8)[fine]
    paths = np.stack([fine, fine // 2], axis=1)
    imgs = []
    for i in range(24):
        imgs.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(imgs[-1], np.full((16, 16, 3), 8 * i, np.uint8))
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    tree = dict(
        paths=paths,
        num_clusters=[4, 2],
        centroids=[np.eye(8)[:4], np.eye(8)[:2]],
        feats=unit,
        img_paths=imgs)
    notes = {}
    files = visualize_hirl(
        feats,
        dict(fine=fine, coarse=fine // 2),
        dict(fine=list('abcd'), coarse=None),
        str(tmp_path),
        tree=tree,
        max_samples=20,
        scalars={'prototypes/level0_nonempty': {
            2: 4.0
        }},
        notes=notes)
    assert set(files) == {'tsne', 'tree', 'gallery', 'prototype_stats'}
    for path in files.values():
        check_png(path, min_side=100)
    assert notes == {}

    (tmp_path / 'none').mkdir()
    notes = {}
    files = visualize_hirl(
        feats, {},
        dict(fine=None, coarse=None),
        str(tmp_path / 'none'),
        tree=tree,
        notes=notes)
    assert set(files) == {'tsne', 'tree', 'gallery'}
    assert notes == dict(
        tsne='the data set has no labels: coloured by the level-1 prototype',
        tree='the data set has no coarse labels: nodes uncoloured',
        prototype_stats='no scalars given')
    notes = {}
    files = visualize_hirl(feats, {}, {}, str(tmp_path), notes=notes)
    assert set(files) == {'tsne'}
    assert notes['tsne'] == 'the data set has no labels: uncoloured'


def _visualize(*args):
    out = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis', 'visualize.py'), *map(str, args)
    ],
                         capture_output=True,
                         text=True,
                         timeout=600,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(
        line.split(': ', 1) for line in out.stdout.splitlines()
        if ': ' in line)


def test_visualize_help_is_complete():
    out = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis', 'visualize.py'), '--help'
    ],
                         capture_output=True,
                         text=True,
                         timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    for text in ('prototype_stats.png', '--cfg-options', '--scalars',
                 '--max-samples', 'named with the reason.',
                 'no image is shown twice'):
        assert text in out.stdout, text


@pytest.fixture(scope='module')
def folder_run(tmp_path_factory):
    """The toy HIRL-SimSiam trained 2 epochs (a tree from epoch 2) on an
    image folder: one sub-folder per class, no coarse labels."""
    from mmpretrain.registry import DATASETS
    tmp = tmp_path_factory.mktemp('folder_run')
    patches = DATASETS.build(
        dict(
            type='PhotoPatches',
            _scope_='mmpretrain',  # whatever scope an earlier test left
            split='train',
            num_train=8,
            num_test=2,
            pipeline=[]))
    for i in range(len(patches)):
        info = patches.get_data_info(i)
        folder = tmp / 'images' / f'class{int(info["gt_label"]):02d}'
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(info['img_path'], folder / f'{i:03d}.png')
    cfg = toy_cfg(tmp / 'run', max_epochs=2, warmup_epochs=1)
    cfg.train_dataloader.dataset = dict(
        type='CustomDataset',
        data_root=str(tmp / 'images'),
        pipeline=cfg.train_pipeline)
    Runner.from_cfg(cfg).train()
    cfg.dump(str(tmp / 'cfg.py'))
    return tmp


@pytest.mark.slow
def test_visualize_a_folder_without_coarse_labels(folder_run):
    vis = folder_run / 'vis'
    printed = _visualize(folder_run / 'cfg.py',
                         folder_run / 'run' / 'epoch_2.pth', '--work-dir', vis)
    for name in ('tsne', 'prototype_tree', 'prototype_gallery',
                 'prototype_stats'):
        check_png(vis / f'{name}.png', min_side=100)
    assert printed['tree'].endswith(
        'prototype_tree.png (the data set has no coarse labels: nodes '
        'uncoloured)')
    assert printed['prototype_stats'] == str(vis / 'prototype_stats.png')


@pytest.mark.slow
def test_visualize_options_and_reasons(folder_run):
    # no labels at all, by --cfg-options: t-SNE coloured by the top level
    vis = folder_run / 'vis_unlabelled'
    printed = _visualize(folder_run / 'cfg.py',
                         folder_run / 'run' / 'epoch_2.pth', '--work-dir', vis,
                         '--cfg-options',
                         'train_dataloader.dataset.with_label=False')
    assert printed['tsne'].endswith(
        '(the data set has no labels: coloured by the level-1 prototype)')
    # before the warm-up ended: no tree, and the reason
    vis = folder_run / 'vis_epoch_1'
    printed = _visualize(folder_run / 'cfg.py',
                         folder_run / 'run' / 'epoch_1.pth', '--work-dir', vis)
    assert printed['gallery'] == (
        'not written: the checkpoint holds no prototype tree (saved before '
        "the prototype hook's warm-up ended)")
    assert not (vis / 'prototype_gallery.png').exists()
    # a log that is not there is an error, before any compute
    out = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'analysis', 'visualize.py'),
        str(folder_run / 'cfg.py'),
        str(folder_run / 'run' / 'epoch_2.pth'), '--scalars',
        str(folder_run / 'missing.json')
    ],
                         capture_output=True,
                         text=True,
                         timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode != 0
    assert 'missing.json does not exist' in out.stderr


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
