# HCSC multi-crop: the single-crop config plus four local crops of 192, 160,
# 128 and 96 px (one each; RandomResizedCrop area 0.14-1), each a query of
# the momentum key with the same instance-wise and prototypical terms.
_base_ = 'hcsc_resnet50_8xb32-coslr-200e_in1k.py'

local_sizes = [192, 160, 128, 96]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiView',
        num_views=[2] + [1] * len(local_sizes),
        transforms=[_base_.view_pipeline] + [[
            dict(_base_.view_pipeline[0], scale=size,
                 crop_ratio_range=(0.14, 1.)), *_base_.view_pipeline[1:]
        ] for size in local_sizes]),
    dict(type='PackInputs')
]))
