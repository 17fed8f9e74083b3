from typing import List, Tuple

import numpy as np
from mmpretrain.datasets import MultiLabelDataset
from mmpretrain.registry import DATASETS

from ..generated import GeneratedDataset, default_cache_root
from ..photo_patches import DOMAINS, PHOTOS, load_photo


@DATASETS.register_module()
class PhotoMosaics(GeneratedDataset, MultiLabelDataset):
    """Multi-label mosaics of the 15 embedded photographs.

    Each image is an ``img_size`` canvas (mid grey) cut into a 2 x 2 grid;
    2-4 of the cells (seeded) hold a patch of a random photograph (a random
    ``crop_size`` square resized to the cell). The labels are the domains of
    the photographs in the mosaic (textures, microscopy/medical, astronomy,
    objects/animals, people) as a sorted list of class indices, i.e.
    MMPretrain's multi-label format (``gt_label``, :meth:`get_cat_ids`; the
    data preprocessor's ``to_onehot=True`` makes them multi-hot). There is
    no coarse level. Training mosaics use the left 80% of every
    photograph, test mosaics the right 20%, as in :class:`PhotoPatches`.
    An annotation line is ``path 0,3,4``.

    Args:
        num_train (int): Training mosaics. Defaults to 1000.
        num_test (int): Test mosaics. Defaults to 300.
        img_size (int): Side of a mosaic (even). Defaults to 64.
        crop_size (int): Side of the square cut from a photograph.
            Defaults to 64.
        min_patches (int): Fewest patches per mosaic. Defaults to 2.
        max_patches (int): Most patches per mosaic (at most 4).
            Defaults to 4.
        seed (int): Seed of the mosaics. Defaults to 0.
        **kwargs: See :class:`GeneratedDataset` (``subset_size`` is not
            supported).
    """

    NAME = 'photo_mosaics'
    METAINFO = dict(classes=DOMAINS)

    def __init__(self,
                 num_train: int = 1000,
                 num_test: int = 300,
                 img_size: int = 64,
                 crop_size: int = 64,
                 min_patches: int = 2,
                 max_patches: int = 4,
                 seed: int = 0,
                 **kwargs) -> None:
        if not 1 <= min_patches <= max_patches <= 4:
            raise ValueError('Need 1 <= min_patches <= max_patches <= 4, got '
                             f'{min_patches} and {max_patches}.')
        if img_size < 2 or img_size % 2:
            raise ValueError(f'img_size must be even, got {img_size}.')
        if kwargs.get('subset_size') is not None:
            raise ValueError('PhotoMosaics has no class-balanced subsets;'
                             ' set num_train / num_test instead.')
        self.num_images = dict(train=num_train, test=num_test)
        self.img_size = img_size
        self.crop_size = crop_size
        self.patch_range = (min_patches, max_patches)
        self.seed = seed
        # 'multilabel' in the folder name: caches of the earlier bitmask
        # annotation format live beside, never under, this one.
        kwargs.setdefault(
            'data_root',
            default_cache_root(
                f'{self.NAME}-multilabel_{num_train}-{num_test}-{img_size}-'
                f'{crop_size}-{min_patches}-{max_patches}-{seed}'))
        super().__init__(**kwargs)

    def generate(self, split: str) -> Tuple[List[np.ndarray], List[list]]:
        import cv2
        rng = np.random.RandomState(self.seed + (split == 'test'))
        photos = [load_photo(name) for name, _ in PHOTOS]
        domain = [DOMAINS.index(d) for _, d in PHOTOS]
        cell = self.img_size // 2
        images, labels = [], []
        for _ in range(self.num_images[split]):
            canvas = np.full((self.img_size, self.img_size, 3), 128, np.uint8)
            num = rng.randint(self.patch_range[0], self.patch_range[1] + 1)
            domains = set()
            for pos in rng.choice(4, num, replace=False):
                k = rng.randint(len(photos))
                photo = photos[k]
                h, w = photo.shape[:2]
                cut = int(w * 0.8)
                x_lo, x_hi = (0, cut) if split == 'train' else (cut, w)
                x_hi = max(x_lo, x_hi - self.crop_size)
                y = rng.randint(0, h - self.crop_size + 1)
                x = rng.randint(x_lo, x_hi + 1)
                patch = cv2.resize(
                    photo[y:y + self.crop_size, x:x + self.crop_size],
                    (cell, cell),
                    interpolation=cv2.INTER_AREA)
                r, c = divmod(int(pos), 2)
                canvas[r * cell:(r + 1) * cell,
                       c * cell:(c + 1) * cell] = patch
                domains.add(domain[k])
            images.append(canvas)
            labels.append(sorted(domains))
        return images, labels

    def encode_label(self, label: List[int]) -> str:
        """The class indices of one mosaic, comma-separated.

        Args:
            label (List[int]): Sorted class indices.

        Returns:
            str: e.g. ``'0,3,4'``.
        """
        return ','.join(str(int(c)) for c in label)

    def decode_label(self, fields: List[str]) -> dict:
        """``gt_label``, the list of class indices of a ``0,3,4`` field.

        Args:
            fields (List[str]): The line's fields after the image path.

        Returns:
            dict: ``gt_label``, a list of class indices.

        Raises:
            ValueError: if the line is not one comma-separated field of
                class indices (e.g. a cache of another format).
        """
        labels = [int(c) for c in fields[0].split(',')] if fields else []
        if len(fields) != 1 or not all(0 <= c < len(DOMAINS) for c in labels):
            raise ValueError(
                f'{self.ann_file} has a line {" ".join(fields)!r} that is not '
                'one comma-separated list of class indices; delete '
                f'{self.data_root} to write it again.')
        return dict(gt_label=labels)
