from typing import List, Optional

import numpy as np
from mmpretrain.registry import DATASETS

from .base_hierarchical import HiRLHierarchicalDataset, default_cache_root
from .photo_patches import DOMAINS, PHOTOS, load_photo

# Every label set is stored as a bitmask (bit d = domain d) in the fine
# column of the annotation file, so the base class writes it unchanged.
NUM_MASKS = 2**len(DOMAINS)


@DATASETS.register_module()
class HiRLPhotoMosaics(HiRLHierarchicalDataset):
    """Multi-label mosaics of the 15 embedded photographs.

    Each image is an ``img_size`` canvas (mid grey) cut into a 2 x 2 grid;
    2-4 of the cells (seeded) hold a patch of a random photograph (a random
    ``crop_size`` square resized to the cell). The labels are the domains of
    the photographs in the mosaic (textures, microscopy/medical, astronomy,
    objects/animals, people) as a list of class indices, i.e. MMPretrain's
    multi-label format (``gt_label``; the data preprocessor's
    ``to_onehot=True`` makes them multi-hot). Training mosaics use the left
    80% of every photograph, test mosaics the right 20%, as in
    :class:`HiRLPhotoPatches`.

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
        **kwargs: See :class:`HiRLHierarchicalDataset` (``subset_size`` is
            not supported).
    """

    NAME = 'photo_mosaics'
    METAINFO = dict(classes=DOMAINS, coarse_classes=DOMAINS)
    FINE_TO_COARSE = tuple(range(NUM_MASKS))

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
            raise ValueError('HiRLPhotoMosaics has no class-balanced subsets;'
                             ' set num_train / num_test instead.')
        self.num_images = dict(train=num_train, test=num_test)
        self.img_size = img_size
        self.crop_size = crop_size
        self.patch_range = (min_patches, max_patches)
        self.seed = seed
        kwargs.setdefault(
            'data_root',
            default_cache_root(
                f'photo_mosaics_{num_train}-{num_test}-{img_size}-'
                f'{crop_size}-{min_patches}-{max_patches}-{seed}'))
        kwargs.setdefault('metainfo', dict(fine_to_coarse=None))
        super().__init__(**kwargs)

    def generate(self, split: str):
        import cv2
        rng = np.random.RandomState(self.seed + (split == 'test'))
        photos = [load_photo(name) for name, _ in PHOTOS]
        domain = [DOMAINS.index(d) for _, d in PHOTOS]
        cell = self.img_size // 2
        images, masks = [], []
        for _ in range(self.num_images[split]):
            canvas = np.full((self.img_size, self.img_size, 3), 128, np.uint8)
            num = rng.randint(self.patch_range[0], self.patch_range[1] + 1)
            mask = 0
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
                mask |= 1 << domain[k]
            images.append(canvas)
            masks.append(mask)
        return images, np.array(masks)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        for info in data_list:
            mask = info.pop('gt_label')
            info.pop('coarse_label')
            info['gt_label'] = [
                d for d in range(len(DOMAINS)) if mask >> d & 1
            ]
        return data_list

    def get_cat_ids(self, idx: int) -> List[int]:
        """The domain indices of mosaic ``idx``."""
        return self.get_data_info(idx)['gt_label']

    def get_coarse_labels(self) -> Optional[np.ndarray]:
        """None: mosaics are multi-label with no coarse level (labels of
        an image: :meth:`get_cat_ids`)."""
        return None
