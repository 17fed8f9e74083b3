from typing import Tuple

import numpy as np
import torch
from mmpretrain.datasets.transforms import BEiTMaskGenerator


def random_block_masks(num: int,
                       grid: Tuple[int, int],
                       ratio_range: Tuple[float, float] = (0.1, 0.5),
                       prob: float = 0.5,
                       min_num_patches: int = 4) -> torch.Tensor:
    """iBOT's block masks, drawn with MMPretrain's BEiTMaskGenerator.

    Each image is masked with probability ``prob``; a masked image gets
    ``round(r * h * w)`` patches, r uniform in ``ratio_range``, as
    rectangular blocks (numpy's global RNG, seeded by the runner).

    Args:
        num (int): Number of images.
        grid (tuple[int, int]): Patches per column and row (h, w).
        ratio_range (tuple[float, float]): Range of the masked fraction.
            Defaults to (0.1, 0.5).
        prob (float): Probability that an image is masked. Defaults to 0.5.
        min_num_patches (int): Smallest block. Defaults to 4.

    Returns:
        Tensor: (num, h, w) bool, True where masked.
    """
    h, w = grid
    if not 0 <= ratio_range[0] <= ratio_range[1] < 1:
        raise ValueError('mask ratio_range must satisfy 0 <= low <= high < 1, '
                         f'got {ratio_range}.')
    masks = np.zeros((num, h, w), dtype=bool)
    for i in range(num):
        if np.random.rand() >= prob:
            continue
        count = int(round(np.random.uniform(*ratio_range) * h * w))
        if count == 0:
            continue
        generator = BEiTMaskGenerator(
            input_size=(h, w),
            num_masking_patches=count,
            min_num_patches=min(min_num_patches, count))
        masks[i] = generator.transform({})['mask'].astype(bool)
    return torch.from_numpy(masks)
