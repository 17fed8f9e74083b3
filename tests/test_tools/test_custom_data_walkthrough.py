"""docs/custom_data.md's walk-through on a folder of Fashion-MNIST PNGs:
the documented commands, read from the doc's ``shell`` blocks and run by
bash as written, with toy budgets appended; and the evaluation configs'
agreement with the pre-training config."""
import argparse
import os
import os.path as osp
import re
import shlex
import subprocess

import numpy as np
import pytest
from mmengine.config import Config, DictAction
from PIL import Image
from tools_path import ROOT

DOC = osp.join(ROOT, 'docs', 'custom_data.md')
PRETRAIN = ('configs/hirl/'
            'hirl-simsiam_resnet18_1xb64-coslr-10e_custom-folder.py')
EVALUATION = (
    'configs/downstream/knn/knn_resnet18_custom-folder.py',
    'configs/downstream/clustering/clustering_resnet18_custom-folder.py',
    'configs/downstream/linear/'
    'resnet18_linear-1xb64-coslr-30e_custom-folder.py',
    'configs/downstream/finetune/'
    'resnet18_finetune-1xb64-coslr-30e_custom-folder.py',
)
NO_WORKERS = ('train_dataloader.num_workers=0 '
              'train_dataloader.persistent_workers=False ')
PROBE = (
    NO_WORKERS + 'val_dataloader.num_workers=0 train_cfg.max_epochs=1 '
    'train_cfg.val_interval=1 param_scheduler.0.T_max=1 '
    'param_scheduler.0.end=1')
# Appended to each documented command holding the key: toy budgets (2
# pre-training epochs of 3 steps, prototypes in the second; probes of one
# epoch). Each command holds exactly one key.
# yapf: disable
TOY = {
    'export DATA_ROOT=': '',
    'tools/check_images.py': '',
    'CKPT=$(cat ': '',
    'tools/train.py configs/hirl/': (
        '--cfg-options ' + NO_WORKERS + 'train_dataloader.batch_size=40 '
        'train_cfg.max_epochs=2 param_scheduler.0.T_max=2 '
        'param_scheduler.0.end=2 custom_hooks.1.warmup_epochs=1 '
        'custom_hooks.1.num_workers=0 default_hooks.logger.interval=1'),
    'configs/downstream/knn/': '--cfg-options test_dataloader.num_workers=0',
    'configs/downstream/clustering/':
        '--cfg-options test_dataloader.num_workers=0',
    'configs/downstream/linear/': '--cfg-options ' + PROBE,
    'configs/downstream/finetune/': '--cfg-options ' + PROBE,
    'tools/analysis/visualize.py': '--max-samples 60',
    'tools/main_job.py': (
        '--epochs 2 --warmup 1 --seeds 0 --cfg-options ' + NO_WORKERS +
        'train_dataloader.batch_size=40'),
}
# yapf: enable
CLASSES, TRAIN, VAL = 10, 12, 3  # images per class


def documented_commands() -> list:
    """The doc's ``shell`` blocks, one command per entry, in order."""
    text = open(DOC).read()
    commands = []
    for block in re.findall(r'```shell\n(.*?)```', text, re.S):
        for command in block.replace('\\\n', ' ').splitlines():
            command = ' '.join(command.split())
            if command and not command.startswith('#'):
                commands.append(command)
    return commands


def with_toy_budget(command: str) -> str:
    keys = [k for k in TOY if k in command]
    assert len(keys) == 1, f'{command!r}: toy budget keys {keys}'
    return f'{command} {TOY[keys[0]]}'.strip()


def write_folder(root: str) -> None:
    """ImageNet style: ``train/<class>/`` and ``val/<class>/`` PNGs, 12 and
    3 Fashion-MNIST images of each of the 10 classes."""
    from hirl_mm.datasets import read_fashion_mnist
    images, labels = read_fashion_mnist('/usr/share/datasets/fashion-mnist',
                                        'train')
    for c in range(CLASSES):
        index = np.flatnonzero(labels == c)[:TRAIN + VAL]
        for i, k in enumerate(index):
            split = 'train' if i < TRAIN else 'val'
            folder = osp.join(root, split, f'class{c}')
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(images[k]).save(osp.join(folder, f'{k}.png'))


def test_the_documented_commands_have_toy_budgets():
    commands = documented_commands()
    assert commands[0].startswith('export DATA_ROOT=')
    for tool in ('tools/check_images.py', 'tools/train.py', 'tools/test.py',
                 'tools/main_job.py', 'tools/analysis/visualize.py',
                 '--random-init'):
        assert any(tool in c for c in commands), tool
    for command in commands:
        with_toy_budget(command)
        for path in re.findall(r'(?:tools|configs)/\S+\.py', command):
            assert osp.isfile(osp.join(ROOT, path)), path


def test_evaluation_preprocesses_as_the_pretraining(monkeypatch):
    """Every evaluation config reads $DATA_ROOT's train/ and val/ with the
    pre-training's normalisation and its prototype hook's centre crop."""
    monkeypatch.setenv('DATA_ROOT', '/my/images')
    pretrain = Config.fromfile(osp.join(ROOT, PRETRAIN))
    assert pretrain.train_dataloader.dataset.data_root == '/my/images'
    assert pretrain.get('val_dataloader') is None  # no Fashion-MNIST
    for path in EVALUATION:
        cfg = Config.fromfile(osp.join(ROOT, path))
        for key in ('mean', 'std', 'to_rgb'):
            assert cfg.data_preprocessor[key] == \
                pretrain.data_preprocessor[key], (path, key)
        if 'knn' in path:
            test = cfg.test_dataloader.dataset
            datasets = {'train': test.bank, 'val': test.query}
        elif 'clustering' in path:
            datasets = {'val': cfg.test_dataloader.dataset}
        else:
            datasets = {
                'train': cfg.train_dataloader.dataset,
                'val': cfg.val_dataloader.dataset
            }
            # the probes' budget: batch 64, 30 epochs, no flip
            assert cfg.train_dataloader.batch_size == 64
            assert cfg.train_cfg.max_epochs == 30
            assert cfg.param_scheduler[0].T_max == 30
            flip = cfg.train_dataloader.dataset.pipeline[3]
            assert flip.type == 'RandomFlip' and flip.prob == 0
        for split, dataset in datasets.items():
            assert (dataset.type, dataset.data_root,
                    dataset.data_prefix) == ('CustomDataset', '/my/images',
                                             split), path
        # the deterministic crop of the pre-training's prototype hook
        assert datasets['val'].pipeline == pretrain.feat_pipeline, path


def test_r50_evaluation_preprocesses_as_the_r50_pretraining(monkeypatch):
    monkeypatch.setenv('DATA_ROOT', '/my/images')
    pretrain = Config.fromfile(
        osp.join(
            ROOT, 'configs/hirl/'
            'hirl-simsiam_resnet50_8xb64-coslr-200e_custom-folder.py'))
    assert pretrain.train_dataloader.dataset.data_root == '/my/images'
    for path in ('configs/downstream/knn/knn_resnet50_custom-folder.py',
                 'configs/downstream/linear/'
                 'resnet50_linear-8xb32-steplr-100e_custom-folder.py'):
        cfg = Config.fromfile(osp.join(ROOT, path))
        preprocessor = cfg.model.get('data_preprocessor') or \
            cfg.data_preprocessor
        for key in ('mean', 'std', 'to_rgb'):
            assert preprocessor[key] == pretrain.data_preprocessor[key]
        if 'knn' in path:
            test = cfg.test_dataloader.dataset
            datasets = dict(train=test.bank, val=test.query)
        else:
            datasets = dict(
                train=cfg.train_dataloader.dataset,
                val=cfg.val_dataloader.dataset)
            assert cfg.train_dataloader.dataset.pipeline[2].type == \
                'RandomFlip'  # the documented index
        for split, dataset in datasets.items():
            assert (dataset.type, dataset.data_root,
                    dataset.data_prefix) == ('CustomDataset', '/my/images',
                                             split), path
        crop = datasets['val'].pipeline[2]
        assert (crop.type, crop.crop_size) == ('CenterCrop', 224)


def cfg_options(option: str) -> dict:
    """``--cfg-options OPTION`` as the tools parse it."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', option]).cfg_options


def test_the_documented_flip_options_reach_the_flips():
    """docs/custom_data.md's --cfg-options that turn the flips on / off."""
    text = open(DOC).read()
    probe = 'train_dataloader.dataset.pipeline.3.prob=0.5'
    pretrain = 'train_dataloader.dataset.pipeline.1.transforms.0.3.prob=0.'
    assert probe in text and pretrain in text
    for path in EVALUATION[2:]:  # linear, fine-tuning
        cfg = Config.fromfile(osp.join(ROOT, path))
        cfg.merge_from_dict(cfg_options(probe))
        flip = cfg.train_dataloader.dataset.pipeline[3]
        assert (flip.type, flip.prob) == ('RandomFlip', 0.5)
    cfg = Config.fromfile(osp.join(ROOT, PRETRAIN))
    views = cfg.train_dataloader.dataset.pipeline[1].transforms[0]
    assert (views[3].type, views[3].prob) == ('RandomFlip', 0.5)
    cfg.merge_from_dict(cfg_options(pretrain))
    views = cfg.train_dataloader.dataset.pipeline[1].transforms[0]
    assert (views[3].type, views[3].prob) == ('RandomFlip', 0.)


@pytest.mark.slow
def test_walkthrough(tmp_path):
    """Every documented command, in order, by bash in a folder that links
    the repository's tools/, configs/ and .venv/ (work_dirs/ and the data
    are written there)."""
    commands = documented_commands()
    data_root = commands[0].split('=', 1)[1]
    write_folder(str(tmp_path / data_root))
    for name in ('tools', 'configs', '.venv'):
        os.symlink(osp.join(ROOT, name), tmp_path / name)
    # each command after a line with its start time: the log's sections
    script = '\n'.join(['set -euo pipefail'] + [
        f'echo "@@ $(date +%s)" {shlex.quote(c)}\n{with_toy_budget(c)}'
        for c in commands
    ])
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    env.pop('DATA_ROOT', None)
    out = subprocess.run(['bash', '-c', script],
                         cwd=tmp_path,
                         env=env,
                         stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT,
                         text=True,
                         timeout=900)
    (tmp_path / 'walkthrough.log').write_text(out.stdout)
    assert out.returncode == 0, out.stdout[-4000:]
    sections = re.split(r'^@@ \d+ ', out.stdout, flags=re.M)[1:]
    assert [s.split('\n', 1)[0] for s in sections] == commands

    def scores(command_part: str, metric: str) -> list:
        """``metric``'s values printed by the commands holding the part."""
        return [
            float(v) for s in sections if command_part in s.split('\n')[0]
            for v in re.findall(metric + r': ([\d.]+)', s)
        ]

    check, = [s for s in sections if 'tools/check_images.py' in s]
    images = CLASSES * (TRAIN + VAL)
    assert f'0 of {images} files unreadable' in check
    # kNN and clustering of the trained and the random-init backbone, the
    # clustering probe alone: fine labels (the class folders) only
    assert len(scores('configs/downstream/knn/', 'knn/top1_k20_fine')) == 2
    assert len(scores('configs/downstream/knn/', 'clustering/nmi_fine')) == 2
    assert len(
        scores('configs/downstream/clustering/', 'clustering/nmi_fine')) == 1
    assert not scores('configs/downstream/clustering/', 'knn/top1_k20_fine')
    assert 'coarse' not in ''.join(
        re.findall(r'(?:knn|clustering)/\S+', out.stdout))
    # linear (pre-trained, random-init) and fine-tuning
    assert len(scores('configs/downstream/linear/', 'accuracy/top1')) == 2
    assert len(scores('configs/downstream/finetune/', 'accuracy/top1')) == 1
    work = tmp_path / 'work_dirs'
    assert (work / 'pictures' / 'tsne.png').is_file()
    report = (work / 'main_job' / 'report.md').read_text()
    assert f'{data_root}: {CLASSES * TRAIN} train/ images in {CLASSES} ' \
        'classes' in report
    assert '| HIRL-SimSiam - SimSiam |' in report
    assert '| knn_top1_fine | nmi_fine |' in report
    assert '| NMI fine | ACC fine |' in report
    assert 'coarse' not in report
