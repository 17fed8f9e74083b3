# HCSC multi-crop on embedded Fashion-MNIST: the 32-px query and key plus
# local crops of 28, 24, 20 and 16 px (224/192/160/128/96 scaled to 32),
# with the reference's area range of the k-th local crop (192/160/128/96).
_base_ = 'hcsc_resnet18_1xb64-coslr-10e_fmnist.py'

local_sizes = [28, 24, 20, 16]
local_ranges = [(0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiView',
        num_views=[2] + [1] * len(local_sizes),
        transforms=[_base_.view_pipeline] + [[
            dict(_base_.view_pipeline[0], scale=size, crop_ratio_range=area),
            *_base_.view_pipeline[1:]
        ] for size, area in zip(local_sizes, local_ranges)]),
    dict(type='PackInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
