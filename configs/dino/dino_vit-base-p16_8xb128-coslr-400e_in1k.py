# DINO, ViT-B/16, ImageNet-1k, the reference recipe on hirl_mm's DINO:
# 400 epochs, batch 1024 (8 x 128), AdamW lr 7.5e-4 x 1024 / 256 (DINO's
# linear scaling rule), 10 linear warm-up epochs then cosine to 2e-6,
# weight decay 0.04 -> 0.4 (cosine, none on biases and norms), each
# parameter's gradient norm clipped to 0.3 (DINO's utils.clip_gradients,
# PerParameterClipOptimWrapper), 2 global crops (224 px,
# scale 0.25-1) + 10 local crops (96 px, 0.05-0.25), head 2048-2048-256 ->
# 65536, teacher momentum 0.996 -> 1 (cosine), teacher temperature
# 0.04 -> 0.07 over 50 epochs, last layer frozen for 3 epochs, drop path 0.1.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs512_mocov3.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

color_aug = [
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply',
         transforms=[
             dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                  saturation=0.2, hue=0.1)
         ],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
global_view1 = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.25, 1.),
         interpolation='bicubic', backend='pillow'),
    *color_aug,
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
         magnitude_std='inf', prob=1.),
]
global_view2 = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.25, 1.),
         interpolation='bicubic', backend='pillow'),
    *color_aug,
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
         magnitude_std='inf', prob=0.1),
    dict(type='Solarize', thr=128, prob=0.2),
]
local_view = [
    dict(type='RandomResizedCrop', scale=96, crop_ratio_range=(0.05, 0.25),
         interpolation='bicubic', backend='pillow'),
    *color_aug,
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
         magnitude_std='inf', prob=0.5),
]
num_local_views = 10
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1, num_local_views],
         transforms=[global_view1, global_view2, local_view]),
    dict(type='PackInputs')
]
train_dataloader = dict(
    batch_size=128, num_workers=10, dataset=dict(pipeline=train_pipeline))

out_channels = 65536
model = dict(
    type='DINO',
    base_momentum=1 - 0.996,
    end_momentum=0.,
    freeze_last_layer_epochs=3,
    backbone=dict(
        type='VisionTransformer',
        arch='base',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='cls_token',
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
        ]),
    neck=dict(
        type='DINONeck',
        in_channels=768,
        hid_channels=2048,
        bottleneck_channels=256,
        out_channels=out_channels),
    head=dict(
        type='DINOHead',
        out_channels=out_channels,
        student_temp=0.1,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_epochs=50,
        center_momentum=0.9))

max_epochs = 400
warmup_epochs = 10
optim_wrapper = dict(
    type='PerParameterClipOptimWrapper',
    optimizer=dict(type='AdamW', lr=7.5e-4 * 1024 / 256, weight_decay=0.04),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=dict(max_norm=0.3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs,
         eta_min=2e-6, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
    # weight decay 0.04 -> 0.4; the groups without decay stay at 0
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
         eta_min_ratio=10., T_max=max_epochs, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3),
    finite_loss=dict(type='FiniteLossCheckHook'),
    rng_state=dict(type='RNGStateHook'))
# the last layer gets no gradient while it is frozen
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=1024)
# A rank waits at most 30 minutes in a collective (NCCL's default: 10);
# see docs/benchmarks.md, dress rehearsal.
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))
