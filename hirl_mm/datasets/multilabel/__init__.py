from .coco_multilabel import COCOMultiLabel
from .photo_mosaics import PhotoMosaics

__all__ = ['COCOMultiLabel', 'PhotoMosaics']
