import numpy as np
from mmpretrain.registry import DATASETS

from .generated import GeneratedDataset, default_cache_root
from .hierarchical import HierarchicalLabelsMixin

# (skimage.data name, domain); all ship inside the scikit-image wheel.
PHOTOS = (('brick', 'textures'), ('grass', 'textures'), ('gravel', 'textures'),
          ('cell', 'microscopy/medical'), ('retina', 'microscopy/medical'),
          ('immunohistochemistry',
           'microscopy/medical'), ('hubble_deep_field',
                                   'astronomy'), ('moon', 'astronomy'),
          ('chelsea', 'objects/animals'), ('coffee', 'objects/animals'),
          ('rocket', 'objects/animals'), ('horse', 'objects/animals'),
          ('coins', 'objects/animals'), ('astronaut', 'people'), ('camera',
                                                                  'people'))
DOMAINS = ('textures', 'microscopy/medical', 'astronomy', 'objects/animals',
           'people')


def load_photo(name: str) -> np.ndarray:
    """A ``skimage.data`` photograph as an H x W x 3 BGR uint8 array."""
    import skimage.data
    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., 2::-1])


@DATASETS.register_module()
class PhotoPatches(HierarchicalLabelsMixin, GeneratedDataset):
    """Colour patches of 15 real photographs, with a two-level hierarchy.

    Fine label = source photograph, coarse label = its domain (textures,
    microscopy/medical, astronomy, objects/animals, people). Patches are
    seeded random ``crop_size`` squares resized to ``img_size``; training
    patches come from the left 80% of each photograph and test patches from
    the right 20%, so the test split is held out.

    Args:
        num_train (int): Training patches per photograph. Defaults to 200.
        num_test (int): Test patches per photograph. Defaults to 50.
        crop_size (int): Side of the square cut from the photograph.
            Defaults to 64.
        img_size (int): Side of the written patch. Defaults to 32.
        seed (int): Seed of the crop positions. Defaults to 0.
        **kwargs: See :class:`GeneratedDataset`.
    """

    NAME = 'photo_patches'
    METAINFO = dict(
        classes=tuple(name for name, _ in PHOTOS), coarse_classes=DOMAINS)
    FINE_TO_COARSE = tuple(DOMAINS.index(domain) for _, domain in PHOTOS)

    def __init__(self,
                 num_train: int = 200,
                 num_test: int = 50,
                 crop_size: int = 64,
                 img_size: int = 32,
                 seed: int = 0,
                 **kwargs):
        self.num_per_photo = dict(train=num_train, test=num_test)
        self.crop_size = crop_size
        self.img_size = img_size
        self.seed = seed
        kwargs.setdefault(
            'data_root',
            default_cache_root(f'photo_patches_{num_train}-{num_test}-'
                               f'{crop_size}-{img_size}-{seed}'))
        super().__init__(**kwargs)

    def generate(self, split: str):
        import cv2
        rng = np.random.RandomState(self.seed + (split == 'test'))
        images, labels = [], []
        for label, (name, _) in enumerate(PHOTOS):
            photo = load_photo(name)
            h, w = photo.shape[:2]
            cut = int(w * 0.8)
            x_lo, x_hi = (0, cut) if split == 'train' else (cut, w)
            x_hi -= self.crop_size
            for _ in range(self.num_per_photo[split]):
                y = rng.randint(0, h - self.crop_size + 1)
                x = rng.randint(x_lo, max(x_lo, x_hi) + 1)
                crop = photo[y:y + self.crop_size, x:x + self.crop_size]
                images.append(
                    cv2.resize(
                        crop, (self.img_size, self.img_size),
                        interpolation=cv2.INTER_AREA))
                labels.append(label)
        return images, np.array(labels)
