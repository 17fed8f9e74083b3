# HCSC multi-crop: the single-crop config plus four local crops of 192, 160,
# 128 and 96 px (one each), each a query of the momentum key with the same
# instance-wise and prototypical terms (summed over the crops). Area ranges
# per size as the reference (gyfastas/HCSC configs/multi_crop_200eps_bs256
# .yaml: min_scale_crops 0.172 0.143 0.114 0.086, max_scale_crops 0.86
# 0.715 0.571 0.429).
_base_ = 'hcsc_resnet50_8xb32-coslr-200e_in1k.py'

local_sizes = [192, 160, 128, 96]
local_ranges = [(0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429)]
train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'),
        dict(
            type='MultiView',
            num_views=[2] + [1] * len(local_sizes),
            transforms=[_base_.view_pipeline] + [[
                dict(
                    _base_.view_pipeline[0], scale=size,
                    crop_ratio_range=area), *_base_.view_pipeline[1:]
            ] for size, area in zip(local_sizes, local_ranges)]),
        dict(type='PackInputs')
    ]))
