# HCSC multi-crop on embedded Fashion-MNIST: the 32-px query and key plus
# local crops of 28, 24, 20 and 16 px (224/192/160/128/96 scaled to 32).
_base_ = 'hcsc_resnet18_1xb64-coslr-10e_fmnist.py'

local_sizes = [28, 24, 20, 16]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiView',
        num_views=[2] + [1] * len(local_sizes),
        transforms=[_base_.view_pipeline] + [[
            dict(_base_.view_pipeline[0], scale=size,
                 crop_ratio_range=(0.14, 1.)), *_base_.view_pipeline[1:]
        ] for size in local_sizes]),
    dict(type='PackInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
