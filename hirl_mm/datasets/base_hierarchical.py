import os
import os.path as osp
import shutil
import tempfile
from abc import abstractmethod
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmpretrain.datasets import BaseDataset

DEFAULT_CACHE = osp.join('~', '.cache', 'hirl_mm', 'data')


def default_cache_root(name: str) -> str:
    """``$HIRL_MM_DATA/name``, by default ``~/.cache/hirl_mm/data/name``."""
    return osp.join(
        osp.expanduser(os.environ.get('HIRL_MM_DATA', DEFAULT_CACHE)), name)


class HiRLHierarchicalDataset(BaseDataset):
    """A labelled two-level data set written once as image files.

    Subclasses produce ``(images, fine_labels)`` per split in
    :meth:`generate`; the first use writes them as PNG files plus an
    annotation file ``{split}.txt`` (``path fine coarse`` per line) under
    ``data_root``, atomically, so concurrent ranks never read half a set.
    Every sample carries ``gt_label`` (fine), ``coarse_label`` and
    ``sample_idx``; ``metainfo`` has ``classes``, ``coarse_classes`` and
    ``fine_to_coarse``.

    Args:
        split (str): 'train' or 'test'.
        data_root (str, optional): Where the image files go. Defaults to
            ``$HIRL_MM_DATA/<name>`` (``~/.cache/hirl_mm/data/<name>``).
        subset_size (int, optional): Keep a seeded, class-balanced subset of
            this many images. Defaults to None (all).
        subset_seed (int): Seed of the subset. Defaults to 0.
        **kwargs: Passed to :class:`mmengine.dataset.BaseDataset`.
    """

    NAME = ''
    FINE_TO_COARSE: Tuple[int, ...] = ()

    def __init__(self,
                 split: str = 'train',
                 data_root: Optional[str] = None,
                 subset_size: Optional[int] = None,
                 subset_seed: int = 0,
                 **kwargs) -> None:
        if split not in ('train', 'test'):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.subset_size = subset_size
        self.subset_seed = subset_seed
        metainfo = dict(
            classes=self.METAINFO['classes'],
            coarse_classes=self.METAINFO['coarse_classes'],
            fine_to_coarse=self.FINE_TO_COARSE)
        metainfo.update(kwargs.pop('metainfo', None) or {})
        super().__init__(
            data_root=data_root or default_cache_root(self.NAME),
            ann_file=f'{split}.txt',
            metainfo=metainfo,
            **kwargs)

    @abstractmethod
    def generate(self, split: str) -> Tuple[Sequence[np.ndarray], np.ndarray]:
        """Return the images (H x W or H x W x 3 BGR uint8) and fine labels.

        Every subclass implements it.
        """

    def materialize(self) -> None:
        """Write the split's image files and annotation file if missing."""
        if osp.isfile(self.ann_file):
            return
        os.makedirs(self.data_root, exist_ok=True)
        images, labels = self.generate(self.split)
        tmp = tempfile.mkdtemp(prefix=f'.{self.split}-', dir=self.data_root)
        lines = []
        for i, (img, label) in enumerate(zip(images, labels)):
            name = f'{self.split}/{i:06d}.png'
            cv2.imwrite(osp.join(tmp, f'{i:06d}.png'), img)
            lines.append(f'{name} {int(label)} '
                         f'{self.FINE_TO_COARSE[int(label)]}\n')
        with open(osp.join(tmp, 'ann.txt'), 'w') as f:
            f.writelines(lines)
        img_dir = osp.join(self.data_root, self.split)
        try:
            os.rename(tmp, img_dir)
            os.rename(osp.join(img_dir, 'ann.txt'), self.ann_file)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)

    def load_data_list(self) -> List[dict]:
        self.materialize()
        with open(self.ann_file) as f:
            rows = [line.split() for line in f if line.strip()]
        fine = np.array([int(r[1]) for r in rows], dtype=np.int64)
        if not rows:
            raise ValueError(f'The {self.split} split of {type(self).__name__}'
                             f' is empty (annotation file {self.ann_file}).')
        keep = np.arange(len(rows))
        if self.subset_size is not None:
            keep = balanced_subset(fine, self.subset_size, self.subset_seed)
        return [
            dict(
                img_path=osp.join(self.data_root, rows[i][0]),
                gt_label=int(rows[i][1]),
                coarse_label=int(rows[i][2])) for i in keep
        ]

    def get_coarse_labels(self) -> np.ndarray:
        """Coarse label of every sample, shape (N, )."""
        return np.array(
            [self.get_data_info(i)['coarse_label'] for i in range(len(self))])


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset with ``size // C`` images per class.

    Raises:
        ValueError: if a class has fewer images than its share.
    """
    classes = np.unique(labels)
    per_class = size // len(classes)
    if per_class < 1:
        raise ValueError(f'subset_size={size} is smaller than the number of '
                         f'classes ({len(classes)}).')
    rng = np.random.RandomState(seed)
    keep = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f'subset_size={size} needs {per_class} images of '
                             f'class {c}, which has only {len(idx)}.')
        keep.append(rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(keep))
