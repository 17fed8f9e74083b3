from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PyramidPatches(BaseTransform):
    """SS-PRL's pyramid of patch views, appended to the global views.

    For every pyramid scale ``g``: a random resized crop of the image
    (``crop_ratio_range``, default 0.6-1.0 of the area) to
    ``crop_sizes[i]``, cut into a ``g x g`` grid; every grid cell gets
    ``num_views`` views, each a random ``patch_sizes[i]`` crop of the cell
    followed by ``patch_pipeline``. The global views come from
    ``global_views`` (a :class:`mmpretrain.datasets.transforms.MultiView`
    config, or None for patches only), so one transform replaces SwAV's
    ``MultiView`` and ``PackInputs`` packs everything.

    ``results['img']`` becomes one flat list: the global views, then per
    scale the patch views, view by view and, within a view, the cells in
    row-major order (``2 * g * g`` images of ``patch_sizes[i]`` for
    ``num_views=2``). After collation the model concatenates a scale's
    ``num_views * g * g`` tensors into a single backbone batch.
    Randomness comes from numpy's global RNG, as in MMPretrain's transforms,
    so seeding it (the Runner's ``randomness`` / worker seeds) makes the
    output reproducible.

    Args:
        grids (Sequence[int]): Grid side of each scale. Defaults to (2, 3).
        crop_sizes (Sequence[int]): Side of the resized crop each scale is
            cut from. Defaults to (314, 383).
        patch_sizes (Sequence[int]): Side of a patch view, at most the cell
            side ``crop_size // g``. Defaults to (112, 96).
        crop_ratio_range (Sequence[float]): Area range of the scale crop.
            Defaults to (0.6, 1.0).
        num_views (int): Views per patch. Defaults to 2.
        patch_pipeline (List[dict], optional): Augmentations of every patch
            view after its random crop. Defaults to None (crop only).
        global_views (dict, optional): Config of the transform producing
            the global views (a list under ``img``). Defaults to None.
    """

    def __init__(self,
                 grids: Sequence[int] = (2, 3),
                 crop_sizes: Sequence[int] = (314, 383),
                 patch_sizes: Sequence[int] = (112, 96),
                 crop_ratio_range: Sequence[float] = (0.6, 1.0),
                 num_views: int = 2,
                 patch_pipeline: Optional[List[dict]] = None,
                 global_views: Optional[dict] = None) -> None:
        if not len(grids) == len(crop_sizes) == len(patch_sizes):
            raise ValueError(
                'grids, crop_sizes and patch_sizes need one entry per scale, '
                f'got {len(grids)}, {len(crop_sizes)} and {len(patch_sizes)}.')
        for g, crop, patch in zip(grids, crop_sizes, patch_sizes):
            if g < 1 or patch < 1 or patch > crop // g:
                raise ValueError(f'Scale g={g}: patch_size {patch} must be in '
                                 f'[1, crop_size // g = {crop // max(g, 1)}] '
                                 f'(crop_size {crop}).')
        if num_views < 1:
            raise ValueError(f'num_views must be >= 1, got {num_views}.')
        self.grids = tuple(grids)
        self.crop_sizes = tuple(crop_sizes)
        self.patch_sizes = tuple(patch_sizes)
        self.num_views = num_views
        self.scale_crops = [
            TRANSFORMS.build(
                dict(
                    type='RandomResizedCrop',
                    scale=crop,
                    crop_ratio_range=tuple(crop_ratio_range),
                    backend='pillow')) for crop in crop_sizes
        ]
        self.patch_pipeline = Compose([
            TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in patch_pipeline or []
        ])
        self.global_views = (
            TRANSFORMS.build(global_views) if global_views else None)

    def num_images(self) -> int:
        """Number of patch views appended per image."""
        return sum(self.num_views * g * g for g in self.grids)

    def _patch_views(self, img: np.ndarray) -> List[np.ndarray]:
        views = []
        for g, crop, size in zip(self.grids, self.scale_crops,
                                 self.patch_sizes):
            scaled = crop(dict(img=img))['img']
            cell = scaled.shape[0] // g
            cells = [
                scaled[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
                for r in range(g) for c in range(g)
            ]
            for _ in range(self.num_views):
                for patch in cells:
                    y, x = np.random.randint(0, cell - size + 1, size=2)
                    out = self.patch_pipeline(
                        dict(
                            img=np.ascontiguousarray(patch[y:y + size,
                                                           x:x + size]),
                            img_shape=(size, size)))
                    views.append(out['img'])
        return views

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if not isinstance(img, np.ndarray):
            raise TypeError('PyramidPatches needs one image array under '
                            f"'img' (got {type(img).__name__}); put it right "
                            'after LoadImageFromFile, with the global views '
                            'in its `global_views`.')
        views = []
        if self.global_views is not None:
            # MultiView writes its views into the dict it gets
            views = list(self.global_views(dict(results))['img'])
        views += self._patch_views(img)
        results['img'] = views
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(grids={self.grids}, crop_sizes='
                f'{self.crop_sizes}, patch_sizes={self.patch_sizes}, '
                f'num_views={self.num_views})')
