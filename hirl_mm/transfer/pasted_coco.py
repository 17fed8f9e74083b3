"""MMDetection view of the pasted Fashion-MNIST objects."""
from typing import Optional, Sequence

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from hirl_mm.datasets.fashion_mnist import DEBIAN_PATH
from .pasted_objects import CLASSES, PastedObjectsMixin


@DATASETS.register_module()
class PastedObjectsCocoDataset(PastedObjectsMixin, CocoDataset):
    """Fashion-MNIST items pasted on photo backgrounds, COCO format.

    Boxes and instance masks of 10 classes, written once to the data
    cache by :func:`materialize_pasted_objects` and read by MMDetection's
    ``CocoDataset``.

    Args:
        split (str): 'train' or 'test'. Defaults to 'train'.
        num_images (int): Images in the split. Defaults to 1000.
        img_size (int): Image side. Defaults to 96.
        max_objects (int): Objects per image, at most. Defaults to 3.
        scale (Sequence[int]): Item side range. Defaults to (28, 48).
        seed (int): Seed. Defaults to 0.
        source_root (str): Fashion-MNIST idx files. Defaults to
            ``/usr/share/datasets/fashion-mnist``.
        data_root (str, optional): Defaults to
            ``$HIRL_MM_DATA/pasted_fmnist_{num_images}-{img_size}-...``.
        **kwargs: Passed to ``CocoDataset``.
    """

    METAINFO = dict(classes=CLASSES)

    def __init__(self,
                 split: str = 'train',
                 num_images: int = 1000,
                 img_size: int = 96,
                 max_objects: int = 3,
                 scale: Sequence[int] = (28, 48),
                 seed: int = 0,
                 source_root: Optional[str] = DEBIAN_PATH,
                 data_root: Optional[str] = None,
                 **kwargs) -> None:
        data_root = self.init_paste(
            data_root,
            split=split,
            num_images=num_images,
            img_size=img_size,
            max_objects=max_objects,
            scale=scale,
            seed=seed,
            source_root=source_root)
        super().__init__(
            data_root=data_root,
            ann_file=f'{split}/instances.json',
            data_prefix=dict(img=f'{split}/images/'),
            **kwargs)
