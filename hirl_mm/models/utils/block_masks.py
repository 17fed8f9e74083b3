import math
from typing import Optional, Tuple

import numpy as np
import torch


def block_mask(grid: Tuple[int, int],
               num_patches: float,
               min_num_patches: Optional[int] = None,
               aspect_range: Tuple[float, float] = (0.3, 1 / 0.3),
               rng: Optional[np.random.RandomState] = None) -> np.ndarray:
    """One iBOT / BEiT block mask covering at most ``num_patches`` patches.

    Rectangles are added while fewer than ``num_patches`` patches are
    masked: area uniform in ``[min_num_patches, remaining]``, log aspect
    ratio uniform in ``log(aspect_range)``, sides rounded, both sides
    shorter than the grid's, the top-left corner uniform over every
    position where the block fits (last row and column included, unlike
    MMPretrain's ``BEiTMaskGenerator``, whose exclusive upper bound never
    reaches them). A rectangle is kept if it adds between 1 and
    ``remaining`` new patches; after 10 failed tries the mask is final
    (bytedance/ibot ``loader.py``, ``ImageFolderMask.__getitem__``).

    Args:
        grid (tuple[int, int]): Patches per column and row (h, w).
        num_patches (float): Target number of masked patches (not
            rounded, as the reference's ``pred_ratio * H * W``).
        min_num_patches (int, optional): Smallest block area. Defaults to
            None: ``(min(h, w) // 3) ** 2``, iBOT's.
        aspect_range (tuple[float, float]): Range of a block's aspect
            ratio. Defaults to (0.3, 1 / 0.3).
        rng (np.random.RandomState, optional): Random generator. Defaults
            to None: numpy's global one (seeded by the runner).

    Returns:
        np.ndarray: (h, w) bool, True where masked.
    """
    rng = np.random if rng is None else rng
    h, w = grid
    low = (min(h, w) // 3)**2 if min_num_patches is None else min_num_patches
    log_aspect = (math.log(aspect_range[0]), math.log(aspect_range[1]))
    mask = np.zeros((h, w), dtype=bool)
    count = 0
    while count < num_patches:
        remaining = num_patches - count
        added = 0
        for _ in range(10):
            # uniform between the two, whichever is larger (Python's
            # random.uniform, which the reference uses)
            area = low + (remaining - low) * rng.random_sample()
            aspect = math.exp(rng.uniform(*log_aspect))
            bh = int(round(math.sqrt(area * aspect)))
            bw = int(round(math.sqrt(area / aspect)))
            if bh >= h or bw >= w:
                continue
            top = rng.randint(0, h - bh + 1)  # inclusive of h - bh
            left = rng.randint(0, w - bw + 1)
            block = mask[top:top + bh, left:left + bw]
            new = block.size - int(block.sum())
            if 0 < new <= remaining:
                block[...] = True
                added = new
                break
        if added == 0:
            break
        count += added
    return mask


def random_block_masks(num: int,
                       grid: Tuple[int, int],
                       ratio_range: Tuple[float, float] = (0.1, 0.5),
                       prob: float = 0.5,
                       min_num_patches: Optional[int] = None) -> torch.Tensor:
    """iBOT's block masks for ``num`` images (:func:`block_mask`).

    Each image is masked with probability ``prob``; a masked image targets
    ``r * h * w`` patches, r uniform in ``ratio_range``: iBOT's
    ``--pred_ratio 0 0.3 --pred_ratio_var 0 0.2`` is ``prob=0.5``,
    ``ratio_range=(0.1, 0.5)``. numpy's global generator, seeded by the
    runner.

    Args:
        num (int): Number of images.
        grid (tuple[int, int]): Patches per column and row (h, w).
        ratio_range (tuple[float, float]): Range of the masked fraction.
            Defaults to (0.1, 0.5).
        prob (float): Probability that an image is masked. Defaults to 0.5.
        min_num_patches (int, optional): Smallest block. Defaults to None:
            ``(min(h, w) // 3) ** 2``, iBOT's.

    Returns:
        Tensor: (num, h, w) bool, True where masked.
    """
    if not 0 <= ratio_range[0] <= ratio_range[1] < 1:
        raise ValueError('mask ratio_range must satisfy 0 <= low <= high < 1, '
                         f'got {ratio_range}.')
    if not 0 <= prob <= 1:
        raise ValueError(f'mask prob must be in [0, 1], got {prob}.')
    masks = np.zeros((num, *grid), dtype=bool)
    for i in range(num):
        if np.random.rand() < prob:
            masks[i] = block_mask(
                grid,
                np.random.uniform(*ratio_range) * grid[0] * grid[1],
                min_num_patches)
    return torch.from_numpy(masks)
