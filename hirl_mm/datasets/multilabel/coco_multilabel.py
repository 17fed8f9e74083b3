import json
import os.path as osp
from typing import List

from mmengine.fileio import get_local_path
from mmpretrain.datasets import MultiLabelDataset
from mmpretrain.registry import DATASETS


@DATASETS.register_module()
class COCOMultiLabel(MultiLabelDataset):
    """COCO as a multi-label classification set, read from instances json.

    The classes are the json's categories sorted by id (80 for COCO 2014 /
    2017); an image's labels are the classes of its object annotations
    (crowd ones included), as a list of class indices (MMPretrain's
    multi-label format). Layout, e.g.::

        data/coco/annotations/instances_train2014.json
        data/coco/train2014/COCO_train2014_000000000009.jpg

    Args:
        ann_file (str): The instances json.
        data_root (str): Root of ``ann_file`` and ``data_prefix``.
            Defaults to ''.
        data_prefix (str | dict): Image folder. Defaults to ''.
        drop_empty (bool): Drop images without annotations.
            Defaults to True.
        **kwargs: Passed to :class:`mmpretrain.datasets.MultiLabelDataset`.
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix='',
                 drop_empty: bool = True,
                 **kwargs) -> None:
        self.drop_empty = drop_empty
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'COCO instances json not found: {self.ann_file}')
        with get_local_path(self.ann_file) as path, open(path) as f:
            coco = json.load(f)
        for key in ('images', 'annotations', 'categories'):
            if key not in coco:
                raise ValueError(f'{self.ann_file} is not a COCO instances '
                                 f'json: it has no {key!r}.')
        cats = sorted(coco['categories'], key=lambda c: c['id'])
        index = {c['id']: i for i, c in enumerate(cats)}
        self._metainfo.setdefault('classes', tuple(c['name'] for c in cats))
        labels = {img['id']: set() for img in coco['images']}
        for ann in coco['annotations']:
            if ann['image_id'] not in labels:
                raise ValueError(f'Annotation {ann.get("id")} refers to '
                                 f'unknown image {ann["image_id"]}.')
            labels[ann['image_id']].add(index[ann['category_id']])
        data_list = [
            dict(
                img_path=osp.join(self.data_prefix['img_path'],
                                  img['file_name']),
                gt_label=sorted(labels[img['id']]))
            for img in sorted(coco['images'], key=lambda i: i['id'])
            if labels[img['id']] or not self.drop_empty
        ]
        return data_list
