# SS-PRL on the embedded photo mosaics (CPU scale): the SwAV mosaics config
# plus a 2 x 2 and a 3 x 3 pyramid of 16 px patches (two views each, cut
# from 44 / 63 px crops of 0.6-1.0 of the 64 px mosaic), 15 prototypes per
# scale, cross-scale learners to the 30 global prototypes, lambdas 0.25.
_base_ = '../swav/swav_resnet18_1xb32-mcrop-2-4-coslr-10e_mosaics.py'

grids = [2, 3]
num_patch_views = 2
num_local_prototypes = 15
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='PyramidPatches',
        grids=grids,
        crop_sizes=[44, 63],
        patch_sizes=[16, 16],
        crop_ratio_range=(0.6, 1.0),
        num_views=num_patch_views,
        patch_pipeline=_base_.color_aug,
        global_views=_base_.global_views),
    dict(type='PackInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

patch_head = dict(
    type='PatchSwAVHead',
    neck=dict(
        type='SwAVNeck',
        in_channels=512,
        hid_channels=512,
        out_channels=128,
        with_avg_pool=True,
        norm_cfg=dict(type='BN1d')),
    loss=dict(
        type='GlobalSwAVLoss',
        feat_dim=128,
        epsilon=0.05,
        temperature=0.1,
        num_crops=[num_patch_views],
        num_prototypes=num_local_prototypes))
cross_scale_head = dict(
    type='CrossScaleHead',
    num_local=num_local_prototypes,
    num_global=_base_.num_prototypes,
    temperature=0.1)
model = dict(
    type='SSPRL',
    grids=grids,
    num_patch_views=num_patch_views,
    patch_heads=[patch_head] * len(grids),
    cross_scale_heads=[cross_scale_head] * len(grids),
    local_loss_weight=[0.25, 0.25],
    l2g_loss_weight=[0.25, 0.25])
# SwAVHook + patch-level queues. The frozen-prototype iterations hold every
# parameter named '*prototypes*': global, patch and cross-scale. Queues
# scaled from the reference's COCO run (5000 patch rows per scale from
# epoch 80 of 200 at batch 128 -> 1248 from epoch 4 of 10 at batch 32); the
# global queue stays off as in the SwAV baseline this config is compared to.
custom_hooks = [
    dict(
        type='SSPRLHook',
        priority='VERY_HIGH',
        batch_size=_base_.batch_size,
        epoch_queue_starts=4,
        crops_for_assign=[0, 1],
        feat_dim=128,
        queue_length=0,
        patch_queue_lengths=[1248, 1248],
        frozen_layers_cfg=dict(prototypes=30))
]
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel',
    find_unused_parameters=True,
    broadcast_buffers=False)
auto_scale_lr = dict(base_batch_size=32)
