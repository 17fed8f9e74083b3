"""iBOT's block masks and recipe against the reference (bytedance/ibot).

``reference_rule_mask`` is a small simulation of the masking rule of
bytedance/ibot ``loader.py`` (``ImageFolderMask.__getitem__``, 'block'
shape; ``get_pred_ratio`` with ``--pred_ratio 0 0.3 --pred_ratio_var 0
0.2``), written from its description with Python's ``random`` (the
reference's generator): with probability 1/2 no mask, otherwise
``high = U(0.1, 0.5) * H * W``; while fewer than ``high`` patches are
masked, up to 10 tries of a rectangle of area ``U((min(H, W) // 3) ** 2,
high - count)``, aspect ``exp(U(log 0.3, log 1 / 0.3))``, sides rounded and
shorter than the grid's, top-left corner ``randint(0, H - h)`` /
``randint(0, W - w)`` (both ends included), kept if it adds between 1 and
``high - count`` patches; no progress in 10 tries ends the mask. The
generator under test (numpy's generator, vectorised fill) must match its
per-position probabilities.
"""
import math
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from scipy import ndimage
from toy import CONFIGS

from hirl_mm.models.utils.block_masks import block_mask, random_block_masks

GRID = (14, 14)  # ViT-B/16 at 224 px


def reference_rule_mask(rnd, H, W, high):
    mask = [[False] * W for _ in range(H)]
    count = 0
    while count < high:
        left_over = high - count
        delta = 0
        for _ in range(10):
            area = rnd.uniform((min(H, W) // 3)**2, left_over)
            ratio = math.exp(rnd.uniform(math.log(0.3), math.log(1 / 0.3)))
            h = int(round(math.sqrt(area * ratio)))
            w = int(round(math.sqrt(area / ratio)))
            if h < H and w < W:
                top, left = rnd.randint(0, H - h), rnd.randint(0, W - w)
                cells = [(i, j) for i in range(top, top + h)
                         for j in range(left, left + w)]
                new = sum(not mask[i][j] for i, j in cells)
                if 0 < new <= left_over:
                    for i, j in cells:
                        mask[i][j] = True
                    delta = new
            if delta:
                break
        if not delta:
            break
        count += delta
    return np.array(mask)


def reference_rule_masks(num, seed=0):
    rnd = random.Random(seed)
    out = []
    for _ in range(num):
        ratio = rnd.choice([0., rnd.uniform(0.1, 0.5)])
        out.append(reference_rule_mask(rnd, *GRID, ratio * GRID[0] * GRID[1]))
    return np.stack(out)


def test_every_position_masked_as_often_as_the_reference_rule():
    # the reference's randint includes both ends; MMPretrain's
    # BEiTMaskGenerator never masks the last row and column
    np.random.seed(0)
    ours = random_block_masks(2000, GRID, (0.1, 0.5), prob=0.5).numpy()
    ref = reference_rule_masks(2000)
    p_ours, p_ref = ours.mean(0), ref.mean(0)
    assert (p_ref > 0).all() and (p_ours > 0).all()
    # 2000 masks each: the difference of two estimates has a standard
    # deviation of at most 0.012 per position
    assert np.abs(p_ours - p_ref).max() < 0.05
    for edge in (np.s_[-1, :], np.s_[:, -1], np.s_[0, :], np.s_[:, 0]):
        assert abs(p_ours[edge].mean() - p_ref[edge].mean()) < 0.02
    # half of the images are masked, 0.1-0.5 of their patches
    masked = ours.reshape(2000, -1).any(1)
    assert abs(masked.mean() - 0.5) < 0.05
    frac = ours[masked].mean((1, 2))
    assert frac.max() <= 0.5 and abs(
        frac.mean() - ref[ref.reshape(2000, -1).any(1)].mean()) < 0.02


def largest_block(masks):
    return np.array(
        [np.bincount(ndimage.label(m)[0].ravel())[1:].max() for m in masks])


def test_smallest_block_is_ibots():
    # 16 target patches: iBOT's first block has area U(16, 16) (14 to 16
    # patches once rounded); with MMPretrain's default of 4 it is U(4, 16)
    rnd = random.Random(1)
    ref = largest_block(
        [reference_rule_mask(rnd, *GRID, 16.) for _ in range(500)])
    np.random.seed(1)
    ours = largest_block([block_mask(GRID, 16.) for _ in range(500)])
    small = largest_block(
        [block_mask(GRID, 16., min_num_patches=4) for _ in range(500)])
    assert abs(ours.mean() - ref.mean()) < 0.5
    assert abs(small.mean() - ref.mean()) > 1.5
    assert (ours >= 12).mean() > 0.95


def test_block_mask_bounds():
    np.random.seed(0)
    for target in (0., 0.5, 7.3, 40., 97.9):
        m = block_mask(GRID, target)
        assert m.shape == GRID and m.dtype == bool
        assert m.sum() <= target
    assert not random_block_masks(10, (8, 8), prob=0.).any()
    with pytest.raises(ValueError, match='ratio_range'):
        random_block_masks(2, (8, 8), (0.5, 1.0))
    with pytest.raises(ValueError, match='prob'):
        random_block_masks(2, (8, 8), prob=1.5)
    # numpy's global generator: seeded runs repeat
    np.random.seed(3)
    a = random_block_masks(8, (8, 8))
    np.random.seed(3)
    assert torch.equal(a, random_block_masks(8, (8, 8)))


def crop_scale(view):
    return tuple(view[0]['crop_ratio_range']), view[0]['scale']


def test_vit_base_crops_are_ibots_published_arguments():
    # iBOT's ViT-B/16 arguments (vitb_16/args.txt of the README's model
    # table): --global_crops_scale 0.32 1 --local_crops_scale 0.05 0.32,
    # 10 local crops, --pred_ratio 0 0.3 --pred_ratio_var 0 0.2
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'ibot',
                 'ibot_vit-base-p16_8xb128-coslr-400e_in1k.py'))
    multi_view = cfg.train_dataloader.dataset.pipeline[1]
    assert multi_view.num_views == [1, 1, 10]
    g1, g2, local = multi_view.transforms
    assert crop_scale(g1) == crop_scale(g2) == ((0.32, 1.), 224)
    assert crop_scale(local) == ((0.05, 0.32), 96)
    assert tuple(cfg.model.mask_ratio) == (0.1, 0.5)
    assert cfg.model.mask_prob == 0.5
    assert cfg.model.head.teacher_patch_temp == 0.07
    assert cfg.model.head.warmup_teacher_patch_temp == 0.04
