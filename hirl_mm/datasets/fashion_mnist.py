import gzip
import hashlib
import os.path as osp
from typing import Tuple

import numpy as np
from mmpretrain.registry import DATASETS

from .generated import GeneratedDataset, default_cache_root
from .hierarchical import HierarchicalLabelsMixin

DEBIAN_PATH = '/usr/share/datasets/fashion-mnist'
FILES = dict(
    train=('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    test=('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'))


def read_idx(path: str) -> np.ndarray:
    """Read an (optionally gzipped) idx file into a uint8 array.

    Args:
        path (str): The idx file.

    Returns:
        np.ndarray: The array, shaped as the file's header says.
    """
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    ndim = data[3]
    shape = np.frombuffer(data, '>u4', ndim, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_fashion_mnist(source_root: str,
                       split: str) -> Tuple[np.ndarray, np.ndarray]:
    """The images and labels of one Fashion-MNIST split.

    Args:
        source_root (str): Folder with the four original ``*.gz`` idx
            files, e.g. ``/usr/share/datasets/fashion-mnist``.
        split (str): 'train' (60k) or 'test' (10k).

    Returns:
        tuple: N x 28 x 28 uint8 images and their N class indices.

    Raises:
        FileNotFoundError: if an idx file is missing (the message names
            Debian's ``dataset-fashion-mnist`` package).
        ValueError: if the two files disagree on the number of images.
    """
    paths = [osp.join(source_root, f) for f in FILES[split]]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f'Fashion-MNIST files not found: {missing}. Install them with '
            '`apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or '
            'set `source_root` to a folder holding '
            f'{", ".join(FILES["train"] + FILES["test"])}.')
    images, labels = (read_idx(p) for p in paths)
    if len(images) != len(labels):
        raise ValueError(f'{paths[0]} has {len(images)} images but '
                         f'{paths[1]} has {len(labels)} labels.')
    return images, labels


@DATASETS.register_module()
class HierarchicalFashionMNIST(HierarchicalLabelsMixin, GeneratedDataset):
    """Fashion-MNIST (60k train / 10k test, 28 x 28) with a coarse level.

    Coarse classes: tops = {T-shirt/top, Pullover, Coat, Shirt}, bottoms &
    dresses = {Trouser, Dress}, footwear = {Sandal, Sneaker, Ankle boot},
    bags = {Bag}. The idx files come from Debian's ``dataset-fashion-mnist``
    package or any folder holding the four original ``*.gz`` files.

    Args:
        source_root (str): Folder with the idx files. Defaults to
            ``/usr/share/datasets/fashion-mnist``. Another folder's images
            are cached under ``fashion_mnist-<hash of its path>`` unless
            ``data_root`` is given.
        **kwargs: See :class:`GeneratedDataset`.
    """

    NAME = 'fashion_mnist'
    METAINFO = dict(
        classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'),
        coarse_classes=('tops', 'bottoms & dresses', 'footwear', 'bags'))
    FINE_TO_COARSE = (0, 1, 0, 1, 0, 2, 0, 2, 3, 2)

    def __init__(self, source_root: str = DEBIAN_PATH, **kwargs) -> None:
        self.source_root = source_root
        source = osp.abspath(source_root)
        if kwargs.get('data_root') is None and source != DEBIAN_PATH:
            # another copy gets a cache of its own, never the Debian one's
            digest = hashlib.sha1(source.encode()).hexdigest()[:8]
            kwargs['data_root'] = default_cache_root(f'{self.NAME}-{digest}')
        super().__init__(**kwargs)

    def generate(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
        return read_fashion_mnist(self.source_root, split)
