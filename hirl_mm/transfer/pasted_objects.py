"""Embedded-scale detection / segmentation data: Fashion-MNIST items pasted
on photo backgrounds, with their boxes, instance masks and semantic masks.

Each split is written once, atomically, as::

    {data_root}/{split}/images/000000.png   # H x W x 3 images
    {data_root}/{split}/masks/000000.png    # semantic masks, 0 = background,
                                            # c + 1 = Fashion-MNIST class c
    {data_root}/{split}/instances.json      # COCO boxes + RLE instance masks

so MMDetection's ``CocoDataset`` and MMSegmentation's ``BaseSegDataset``
read them as they are (see ``PastedObjectsCocoDataset`` and
``PastedObjectsSegDataset``).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from hirl_mm.datasets.fashion_mnist import (DEBIAN_PATH,
                                            HierarchicalFashionMNIST,
                                            read_fashion_mnist)
from hirl_mm.datasets.generated import default_cache_root
from hirl_mm.datasets.photo_patches import load_photo

CLASSES = HierarchicalFashionMNIST.METAINFO['classes']
BACKGROUNDS = ('brick', 'grass', 'gravel', 'moon', 'hubble_deep_field')
# An item pixel brighter than this belongs to the item's mask.
MASK_THRESHOLD = 40


def pasted_data_root(num_images: int, img_size: int, max_objects: int,
                     scale: Sequence[int], seed: int) -> str:
    """Default cache folder of a pasted-objects data set."""
    return default_cache_root(
        f'pasted_fmnist_{num_images}-{img_size}-{max_objects}-'
        f'{scale[0]}-{scale[1]}-{seed}')


def _backgrounds(img_size: int) -> list:
    """Dark grey versions of a few photographs to cut backgrounds from."""
    out = []
    for name in BACKGROUNDS:
        grey = cv2.cvtColor(load_photo(name), cv2.COLOR_BGR2GRAY)
        scale = 2 * img_size / min(grey.shape)
        grey = cv2.resize(
            grey, None, fx=scale, fy=scale,
            interpolation=cv2.INTER_AREA) if scale < 1 else grey
        out.append((grey.astype(np.float32) * 0.3))
    return out


def _overlaps(box: Tuple[int, int, int, int], boxes: list) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1
               for b in boxes)


def paste_objects(items: np.ndarray,
                  labels: np.ndarray,
                  num_images: int,
                  img_size: int = 96,
                  max_objects: int = 3,
                  scale: Sequence[int] = (28, 48),
                  seed: int = 0):
    """Generate the images, semantic masks and instances.

    Args:
        items (np.ndarray): N x 28 x 28 uint8 objects on a black background.
        labels (np.ndarray): Their N classes.
        num_images (int): Images to make.
        img_size (int): Side of the square images. Defaults to 96.
        max_objects (int): 1 to this many non-overlapping objects per image.
            Defaults to 3.
        scale (Sequence[int]): Range of the pasted item side in pixels.
            Defaults to (28, 48).
        seed (int): Seed of everything. Defaults to 0.

    Yields:
        tuple: image (H x W x 3 uint8), semantic mask (H x W uint8) and a
        list of ``(label, H x W bool mask)`` instances.
    """
    if scale[1] > img_size:
        raise ValueError(f'scale {tuple(scale)} does not fit in {img_size} '
                         'px images.')
    rng = np.random.RandomState(seed)
    backgrounds = _backgrounds(img_size)
    for _ in range(num_images):
        bg = backgrounds[rng.randint(len(backgrounds))]
        y, x = (rng.randint(s - img_size + 1) for s in bg.shape)
        img = bg[y:y + img_size, x:x + img_size].copy()  # H x W
        sem = np.zeros((img_size, img_size), np.uint8)
        instances, boxes = [], []
        for _ in range(rng.randint(1, max_objects + 1)):
            for _ in range(20):  # a free place, or give up on this object
                j = rng.randint(len(items))
                side = rng.randint(scale[0], scale[1] + 1)
                x0, y0 = rng.randint(0, img_size - side + 1, 2)
                if not _overlaps((x0, y0, x0 + side, y0 + side), boxes):
                    break
            else:
                continue
            item = cv2.resize(
                items[j], (side, side), interpolation=cv2.INTER_LINEAR)
            mask = item > MASK_THRESHOLD
            if mask.sum() < 16:
                continue
            alpha = np.clip(item.astype(np.float32) / MASK_THRESHOLD, 0, 1)
            patch = img[y0:y0 + side, x0:x0 + side]
            img[y0:y0 + side,
                x0:x0 + side] = alpha * item + (1 - alpha) * patch
            full = np.zeros((img_size, img_size), bool)
            full[y0:y0 + side, x0:x0 + side] = mask
            sem[full] = int(labels[j]) + 1
            boxes.append((x0, y0, x0 + side, y0 + side))
            instances.append((int(labels[j]), full))
        img = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, 2)
        yield img, sem, instances


def _coco_annotation(ann_id: int, img_id: int, label: int,
                     mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_util
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode()
    return dict(
        id=ann_id,
        image_id=img_id,
        category_id=label + 1,
        bbox=[x0, y0, int(xs.max()) + 1 - x0,
              int(ys.max()) + 1 - y0],
        area=int(mask.sum()),
        segmentation=rle,
        iscrowd=0)


def materialize_pasted_objects(
        data_root: str,
        split: str,
        num_images: int,
        img_size: int = 96,
        max_objects: int = 3,
        scale: Sequence[int] = (28, 48),
        seed: int = 0,
        source_root: Optional[str] = DEBIAN_PATH) -> str:
    """Write ``{data_root}/{split}`` once (atomically) and return it.

    The items come from Fashion-MNIST's own split (train items for 'train',
    test items for 'test'); see :func:`paste_objects` for the arguments.
    """
    if split not in ('train', 'test'):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    out = osp.join(data_root, split)
    if osp.isfile(osp.join(out, 'instances.json')):
        return out
    items, labels = read_fashion_mnist(source_root, split)
    os.makedirs(data_root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{split}-', dir=data_root)
    os.makedirs(osp.join(tmp, 'images'))
    os.makedirs(osp.join(tmp, 'masks'))
    images, annotations = [], []
    generator = paste_objects(items, labels, num_images, img_size, max_objects,
                              scale, seed + (split == 'test'))
    for i, (img, sem, instances) in enumerate(generator):
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(tmp, 'images', name), img)
        cv2.imwrite(osp.join(tmp, 'masks', name), sem)
        images.append(
            dict(id=i, file_name=name, height=img_size, width=img_size))
        for label, mask in instances:
            annotations.append(
                _coco_annotation(len(annotations) + 1, i, label, mask))
    categories = [dict(id=c + 1, name=n) for c, n in enumerate(CLASSES)]
    with open(osp.join(tmp, 'instances.json'), 'w') as f:
        json.dump(
            dict(
                images=images, annotations=annotations, categories=categories),
            f)
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class PastedObjectsMixin:
    """What the MMDetection and MMSegmentation views of the pasted objects
    share: their generation arguments, and writing the images once before
    the data list is first read."""

    def init_paste(self, data_root: Optional[str], **paste_cfg) -> str:
        """Keep the generation arguments of :func:`materialize_pasted_objects`.

        Args:
            data_root (str, optional): The folder; None for the default one.
            **paste_cfg: ``split``, ``num_images``, ``img_size``,
                ``max_objects``, ``scale``, ``seed``, ``source_root``.

        Returns:
            str: The data root.
        """
        self.paste_cfg = paste_cfg
        return data_root or pasted_data_root(
            paste_cfg['num_images'], paste_cfg['img_size'],
            paste_cfg['max_objects'], paste_cfg['scale'], paste_cfg['seed'])

    def load_data_list(self) -> list:
        materialize_pasted_objects(self.data_root, **self.paste_cfg)
        return super().load_data_list()
