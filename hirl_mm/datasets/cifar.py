import os.path as osp
import pickle
import tarfile
from typing import Dict, List

import numpy as np
from mmpretrain.registry import DATASETS

from .generated import GeneratedDataset
from .hierarchical import HierarchicalLabelsMixin


def read_cifar_pickles(source: str, folder: str,
                       names: List[str]) -> Dict[str, dict]:
    """Unpickle CIFAR python batches from a folder or a ``.tar.gz`` archive.

    ``source`` may be the archive, the extracted ``folder`` or its parent.
    The batches are plain dicts of arrays and lists (``encoding='bytes'``).
    """
    if osp.isfile(source) and tarfile.is_tarfile(source):
        out = {}
        with tarfile.open(source) as tar:
            for name in names:
                member = tar.extractfile(f'{folder}/{name}')
                out[name] = pickle.load(member, encoding='bytes')
        return out
    root = osp.join(source, folder) if osp.isdir(osp.join(source,
                                                          folder)) else source
    paths = {name: osp.join(root, name) for name in names}
    missing = [p for p in paths.values() if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f'CIFAR files not found: {missing}. Set `source_root` to the '
            f'python archive (e.g. cifar-10-python.tar.gz), the extracted '
            f'`{folder}` folder or its parent.')
    out = {}
    for name, path in paths.items():
        with open(path, 'rb') as f:
            out[name] = pickle.load(f, encoding='bytes')
    return out


def _to_bgr(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(
        np.asarray(data, np.uint8).reshape(-1, 3, 32,
                                           32).transpose(0, 2, 3,
                                                         1)[..., ::-1])


@DATASETS.register_module()
class HierarchicalCIFAR10(HierarchicalLabelsMixin, GeneratedDataset):
    """CIFAR-10 from a local python archive, coarse = vehicles / animals.

    Args:
        source_root (str): ``cifar-10-python.tar.gz``, the extracted
            ``cifar-10-batches-py`` folder or its parent.
        **kwargs: See :class:`GeneratedDataset`.
    """

    NAME = 'cifar10'
    FOLDER = 'cifar-10-batches-py'
    SPLITS = dict(
        train=[f'data_batch_{i}' for i in range(1, 6)], test=['test_batch'])
    LABEL_KEY = b'labels'
    METAINFO = dict(
        classes=('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                 'frog', 'horse', 'ship', 'truck'),
        coarse_classes=('vehicles', 'animals'))
    FINE_TO_COARSE = (0, 0, 1, 1, 1, 1, 1, 1, 0, 0)

    def __init__(self, source_root: str, **kwargs):
        self.source_root = source_root
        super().__init__(**kwargs)

    def generate(self, split: str):
        batches = read_cifar_pickles(self.source_root, self.FOLDER,
                                     self.SPLITS[split])
        images = np.concatenate([b[b'data'] for b in batches.values()])
        labels = np.concatenate(
            [np.asarray(b[self.LABEL_KEY]) for b in batches.values()])
        return _to_bgr(images), labels


@DATASETS.register_module()
class HierarchicalCIFAR100(HierarchicalCIFAR10):
    """CIFAR-100 from a local python archive with its 20 superclasses.

    Args:
        source_root (str): ``cifar-100-python.tar.gz``, the extracted
            ``cifar-100-python`` folder or its parent.
        **kwargs: See :class:`GeneratedDataset`.
    """

    NAME = 'cifar100'
    FOLDER = 'cifar-100-python'
    SPLITS = dict(train=['train'], test=['test'])
    LABEL_KEY = b'fine_labels'

    def __init__(self, source_root: str, **kwargs):
        files = read_cifar_pickles(source_root, self.FOLDER, ['meta', 'test'])
        meta, test = files['meta'], files['test']
        fine_to_coarse = np.zeros(100, dtype=np.int64)
        fine_to_coarse[test[b'fine_labels']] = test[b'coarse_labels']
        self.FINE_TO_COARSE = tuple(int(c) for c in fine_to_coarse)
        self.METAINFO = dict(
            classes=tuple(n.decode() for n in meta[b'fine_label_names']),
            coarse_classes=tuple(n.decode()
                                 for n in meta[b'coarse_label_names']))
        super().__init__(source_root, **kwargs)
