"""MMSegmentation view of the pasted Fashion-MNIST objects."""
from typing import Optional, Sequence

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from hirl_mm.datasets.fashion_mnist import DEBIAN_PATH
from .pasted_objects import CLASSES, PastedObjectsMixin


@DATASETS.register_module()
class PastedObjectsSegDataset(PastedObjectsMixin, BaseSegDataset):
    """Fashion-MNIST items pasted on photo backgrounds, semantic masks.

    11 classes: background (0) and the 10 Fashion-MNIST classes. The
    same files as :class:`PastedObjectsCocoDataset` (same arguments give
    the same images).

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
        **kwargs: Passed to ``BaseSegDataset``.
    """

    METAINFO = dict(
        classes=('background', ) + CLASSES,
        palette=[[0, 0, 0]] + [[(37 * i) % 256, (91 * i) % 256,
                                (151 * i) % 256] for i in range(1, 11)])

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
            img_suffix='.png',
            seg_map_suffix='.png',
            reduce_zero_label=False,
            data_root=data_root,
            data_prefix=dict(
                img_path=f'{split}/images', seg_map_path=f'{split}/masks'),
            **kwargs)
