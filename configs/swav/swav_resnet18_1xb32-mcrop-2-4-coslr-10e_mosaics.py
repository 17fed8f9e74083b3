# MMPretrain's SwAV on the embedded photo mosaics (PhotoMosaics, 64 px,
# labels unused) at CPU scale: multi-crop 2 x 48 px + 4 x 24 px, 30
# prototypes, no queue. The SwAV baseline of the SS-PRL embedded config.
_base_ = [
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

num_crops = [2, 4]
color_aug = [
    dict(
        type='RandomApply',
        transforms=[
            dict(
                type='ColorJitter',
                brightness=0.4,
                contrast=0.4,
                saturation=0.4,
                hue=0.1)
        ],
        prob=0.8),
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomFlip', prob=0.5),
]
global_view = [
    dict(
        type='RandomResizedCrop',
        scale=48,
        crop_ratio_range=(0.2, 1.),
        backend='pillow')
] + color_aug
local_view = [
    dict(
        type='RandomResizedCrop',
        scale=24,
        crop_ratio_range=(0.05, 0.2),
        backend='pillow')
] + color_aug
global_views = dict(
    type='MultiView',
    num_views=num_crops,
    transforms=[global_view, local_view])
train_pipeline = [
    dict(type='LoadImageFromFile'), global_views,
    dict(type='PackInputs')
]
# Deterministic pipeline for feature extraction.
feat_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

batch_size = 32
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    drop_last=True,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='PhotoMosaics', split='train', pipeline=train_pipeline))

num_prototypes = 30
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
            num_prototypes=num_prototypes)))

optim_wrapper = dict(optimizer=dict(lr=0.05))
custom_hooks = [
    dict(
        type='SwAVHook',
        priority='VERY_HIGH',
        batch_size=batch_size,
        crops_for_assign=[0, 1],
        feat_dim=128,
        queue_length=0,
        frozen_layers_cfg=dict(prototypes=30))
]
auto_scale_lr = dict(base_batch_size=32)
