# DINO (hirl_mm's DINO) on embedded Fashion-MNIST at CPU scale: a tiny
# ViT (192-d, 4 layers, 3 heads) with 4 x 4 patches, 2 global crops of 32 px
# + 2 local crops of 16 px, a 256-way head with a 256-d bottleneck, AdamW
# with a 1-epoch linear warm-up and weight decay 0.04 -> 0.4 (cosine),
# teacher temperature 0.04 throughout (DINO's default; with 1024 logits and
# 0.04 -> 0.07 the 75-step runs collapsed to the uniform output), teacher
# momentum 0.99 -> 1 (cosine), last layer frozen in epoch 0 (DINO's
# default), each parameter's gradient norm clipped to 3.0 (DINO's default).
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

num_local_views = 2
global_view = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.4, 1.),
         backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
         prob=0.8),
    dict(type='RandomFlip', prob=0.5),
]
local_view = [
    dict(type='RandomResizedCrop', scale=16, crop_ratio_range=(0.05, 0.4),
         backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
         prob=0.8),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[2, num_local_views],
         transforms=[global_view, local_view]),
    dict(type='PackInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

model = dict(
    type='DINO',
    base_momentum=0.01,
    backbone=dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=192,
            num_layers=4,
            num_heads=3,
            feedforward_channels=768),
        img_size=32,
        patch_size=4,
        out_type='cls_token',
        init_cfg=[
            dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
            dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
        ]),
    neck=dict(
        type='DINONeck',
        in_channels=192,
        hid_channels=512,
        bottleneck_channels=256,
        out_channels=256),
    head=dict(
        type='DINOHead',
        out_channels=256,
        student_temp=0.1,
        warmup_teacher_temp=0.04,
        teacher_temp=0.04,
        warmup_teacher_temp_epochs=2))

max_epochs = 10
optim_wrapper = dict(
    # DINO's clipping: each parameter's gradient norm to 3.0 (its default)
    type='PerParameterClipOptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=5e-4, weight_decay=0.04),
    # DINO: no weight decay on biases and norms
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=dict(max_norm=3.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True,
         begin=1, end=max_epochs, convert_to_iter_based=True),
    # weight decay 0.04 -> 0.4; the groups without decay stay at 0
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
         eta_min_ratio=10., T_max=max_epochs, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]
# the last layer gets no gradient while it is frozen (epoch 0)
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=64)
