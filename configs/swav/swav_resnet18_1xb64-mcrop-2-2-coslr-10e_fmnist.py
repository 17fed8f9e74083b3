# MMPretrain's SwAV (and its queue hook) on embedded Fashion-MNIST at CPU
# scale: multi-crop 2 x 32 px + 2 x 16 px, 100 prototypes, a 640-sample
# queue from epoch 3.
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

num_crops = [2, 2]
global_view = [
    dict(
        type='RandomResizedCrop',
        scale=32,
        crop_ratio_range=(0.2, 1.),
        backend='pillow'),
    dict(
        type='RandomApply',
        transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
        prob=0.8),
    dict(type='RandomFlip', prob=0.5),
]
local_view = [
    dict(
        type='RandomResizedCrop',
        scale=16,
        crop_ratio_range=(0.05, 0.2),
        backend='pillow'),
    dict(
        type='RandomApply',
        transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
        prob=0.8),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiView',
        num_views=num_crops,
        transforms=[global_view, local_view]),
    dict(type='PackInputs')
]
batch_size = 64
train_dataloader = dict(
    batch_size=batch_size, dataset=dict(pipeline=train_pipeline))

model = dict(
    type='SwAV',
    backbone=dict(
        type='ResNet',
        depth=18,
        norm_cfg=dict(type='BN'),
        zero_init_residual=True),
    neck=dict(
        type='SwAVNeck',
        in_channels=512,
        hid_channels=512,
        out_channels=128,
        with_avg_pool=True,
        norm_cfg=dict(type='BN1d')),
    head=dict(
        type='SwAVHead',
        loss=dict(
            type='GlobalSwAVLoss',
            feat_dim=128,
            epsilon=0.05,
            temperature=0.1,
            num_crops=num_crops,
            num_prototypes=100)))

custom_hooks = _base_.custom_hooks + [
    dict(
        type='SwAVHook',
        priority='VERY_HIGH',
        batch_size=batch_size,
        epoch_queue_starts=3,
        crops_for_assign=[0, 1],
        feat_dim=128,
        queue_length=640,
        frozen_layers_cfg=dict(prototypes=20))
]
auto_scale_lr = dict(base_batch_size=64)
