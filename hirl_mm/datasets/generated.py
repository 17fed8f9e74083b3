import os
import os.path as osp
import shutil
import tempfile
from abc import abstractmethod
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmpretrain.datasets import BaseDataset

DEFAULT_CACHE = osp.join('~', '.cache', 'hirl_mm', 'data')


def default_cache_root(name: str) -> str:
    """``$HIRL_MM_DATA/name``, by default ``~/.cache/hirl_mm/data/name``.

    Args:
        name (str): Folder of one data set (and its generation arguments).

    Returns:
        str: The absolute folder.
    """
    return osp.join(
        osp.expanduser(os.environ.get('HIRL_MM_DATA', DEFAULT_CACHE)), name)


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset with ``size // C`` images per class.

    Args:
        labels (np.ndarray): Class of every image, shape (N, ).
        size (int): Images wanted; each of the C classes gets ``size // C``.
        seed (int): Seed of the choice.

    Returns:
        np.ndarray: Sorted indices into ``labels``.

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


class GeneratedDataset(BaseDataset):
    """A data set generated once and then read from image files.

    Subclasses produce ``(images, labels)`` per split in :meth:`generate`;
    the first use writes them as PNG files ``{split}/000000.png`` ... plus
    an annotation file ``{split}.txt`` (``path label-fields`` per line, see
    :meth:`encode_label`) under ``data_root``. The split is written into a
    temporary folder and renamed into place, so concurrent ranks never read
    half a set; later uses only read it. Every sample carries ``img_path``,
    what :meth:`decode_label` returns (``gt_label`` by default) and
    ``sample_idx``; ``metainfo`` starts from the class's ``METAINFO``.

    Args:
        split (str): 'train' or 'test'. Defaults to 'train'.
        data_root (str, optional): Where the image files go. Defaults to
            ``$HIRL_MM_DATA/<NAME>`` (``~/.cache/hirl_mm/data/<NAME>``).
        subset_size (int, optional): Keep a seeded, class-balanced subset of
            this many images (single-label sets only). Defaults to None
            (all).
        subset_seed (int): Seed of the subset. Defaults to 0.
        **kwargs: Passed to :class:`mmpretrain.datasets.BaseDataset`.
    """

    NAME = ''

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
        # Built from the instance, not by mmengine from the class, because
        # some sets (CIFAR-100) read their class names at construction.
        metainfo = self.default_metainfo()
        metainfo.update(kwargs.pop('metainfo', None) or {})
        super().__init__(
            data_root=data_root or default_cache_root(self.NAME),
            ann_file=f'{split}.txt',
            metainfo=metainfo,
            **kwargs)

    def default_metainfo(self) -> dict:
        """The metainfo before the user's ``metainfo`` argument is applied.

        Returns:
            dict: A copy of ``METAINFO``.
        """
        return dict(self.METAINFO)

    @abstractmethod
    def generate(self, split: str) -> Tuple[Sequence[np.ndarray], Sequence]:
        """Return the images (H x W or H x W x 3 BGR uint8) and labels.

        Every subclass implements it.

        Args:
            split (str): 'train' or 'test'.

        Returns:
            tuple: The images and one label per image, in the form
            :meth:`encode_label` takes.
        """

    def encode_label(self, label: Any) -> str:
        """The annotation text of one image's label, after its path.

        Args:
            label (Any): One label from :meth:`generate`, a class index.

        Returns:
            str: Whitespace-separated fields, here the class index.
        """
        return str(int(label))

    def decode_label(self, fields: List[str]) -> dict:
        """The sample keys of one annotation line, inverse of encode_label.

        Args:
            fields (List[str]): The line's fields after the image path.

        Returns:
            dict: ``gt_label``, the class index.
        """
        return dict(gt_label=int(fields[0]))

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
            lines.append(f'{name} {self.encode_label(label)}\n')
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
        if not rows:
            raise ValueError(f'The {self.split} split of {type(self).__name__}'
                             f' is empty (annotation file {self.ann_file}).')
        data_list = [
            dict(
                img_path=osp.join(self.data_root, row[0]),
                **self.decode_label(row[1:])) for row in rows
        ]
        if self.subset_size is not None:
            labels = np.array([info['gt_label'] for info in data_list])
            keep = balanced_subset(labels, self.subset_size, self.subset_seed)
            data_list = [data_list[i] for i in keep]
        return data_list
