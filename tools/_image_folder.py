"""The main job's other data source: an ImageNet-style folder
(``train/<class>/`` and ``val/<class>/`` images), checked, counted and
grafted onto a method's config as ``--cfg-options``.
"""
import glob
import os
import os.path as osp
from typing import Optional

from _cli import replaced
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# A folder run grafts this config's data (pre-processing, pipelines,
# CustomDataset) onto each method's config: methods whose config trains a
# ResNet-18 on its two-view pipeline, as this one does.
FOLDER_CONFIG = \
    'configs/hirl/hirl-simsiam_resnet18_1xb64-coslr-10e_custom-folder.py'
FOLDER_METHODS = ('SimSiam', 'HIRL-SimSiam', 'MoCo v2', 'HIRL-MoCo v2', 'HCSC')
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')


def data_root_folder(root: str) -> Optional[dict]:
    """What ``--data-root`` holds: Fashion-MNIST, or an ImageNet-style
    folder, checked and counted.

    Args:
        root (str): The folder.

    Returns:
        dict, optional: None for Fashion-MNIST's idx files; for a folder
        with ``train/`` or ``val/``, its ``classes`` (the sorted class
        folders) and the images of each split, ``train`` and ``val``.

    Raises:
        ValueError: naming what is missing: the folder, a split, its class
            folders, a class's images, or classes only one split has.
    """
    if not osp.isdir(root):
        raise ValueError(f'{root} is not a folder')
    splits = ('train', 'val')
    if not any(osp.isdir(osp.join(root, s)) for s in splits):
        if glob.glob(osp.join(root, '*-idx?-ubyte*')):
            return None
        raise ValueError(
            f'{root} holds neither the Fashion-MNIST idx files '
            '(train-images-idx3-ubyte.gz, ...) nor an ImageNet-style '
            'folder (train/<class>/ and val/<class>/ images)')
    counts = {}
    for split in splits:
        path = osp.join(root, split)
        if not osp.isdir(path):
            raise ValueError(
                f'{root} has no {split}/ folder: an ImageNet-style folder '
                'needs train/<class>/ and val/<class>/ images')
        classes = sorted(
            e for e in os.listdir(path) if osp.isdir(osp.join(path, e)))
        if not classes:
            raise ValueError(
                f'{path} has no class sub-folders: put the images of each '
                f'class in {split}/<class>/ (the kNN and clustering scores '
                'need labels)')
        counts[split] = {}
        for name in classes:
            counts[split][name] = sum(
                f.lower().endswith(IMG_EXTENSIONS)
                for _, _, files in os.walk(osp.join(path, name))
                for f in files)
            if not counts[split][name]:
                raise ValueError(f'{osp.join(path, name)} holds no images '
                                 f'({" ".join(IMG_EXTENSIONS)})')
    train, val = counts['train'], counts['val']
    if list(train) != list(val):
        raise ValueError(
            f'{root}: train/ and val/ need the same class folders (a '
            "class's index is its place in the sorted names); only in "
            f'train/: {sorted(set(train) - set(val))}, only in val/: '
            f'{sorted(set(val) - set(train))}')
    if len(train) < 2:
        raise ValueError(f'{root}: one class folder ({list(train)}); the '
                         'scores need two or more')
    return dict(
        classes=list(train), train=sum(train.values()), val=sum(val.values()))


def folder_options(cfg: Config, data_root: str) -> dict:
    """The options that train ``cfg`` on an ImageNet-style folder with the
    data of ``FOLDER_CONFIG``: its pre-processing, pipelines and
    ``CustomDataset`` on ``train/``, the class folders as labels.

    Args:
        cfg (Config): A training config of ``FOLDER_METHODS``.
        data_root (str): The folder.

    Returns:
        dict: ``--cfg-options`` keys and values.
    """
    folder = Config.fromfile(osp.join(ROOT, FOLDER_CONFIG))
    options = {
        key: replaced(folder[key])
        for key in ('data_preprocessor', 'view_pipeline', 'train_pipeline',
                    'feat_pipeline')
    }
    dataset = dict(
        folder.train_dataloader.dataset, data_root=data_root, with_label=True)
    options['train_dataloader.dataset'] = replaced(dataset)
    for i, hook in enumerate(cfg.get('custom_hooks', [])):
        if hook.type == 'HierarchicalPrototypeHook':
            options[f'custom_hooks.{i}.pipeline'] = folder.feat_pipeline
    # a kNN monitor during training scores the folder too: train/ the bank,
    # val/ the queries, never the Fashion-MNIST of the method's config
    val = cfg.get('val_dataloader')
    if val and val.dataset.get('type') == 'KNNDataset':
        bank = dict(dataset, pipeline=folder.feat_pipeline)
        options['val_dataloader.dataset'] = replaced(
            dict(
                type='KNNDataset',
                bank=bank,
                query=dict(bank, data_prefix='val')))
    return options
