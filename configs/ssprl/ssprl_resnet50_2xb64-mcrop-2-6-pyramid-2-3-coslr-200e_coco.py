# SS-PRL, the reference setting (WesleyHsieh0806/SS-PRL, SS-PRL/
# train_SSPRL.sh): MMPretrain's SwAV (R50, 2 x 224 + 6 x 96 global crops,
# eps 0.05, 3 Sinkhorn iterations, T 0.1, LARS lr 0.6 cosine to 6e-4 with
# no warm-up, weight decay 1e-6) with a 2 x 2 and a 3 x 3 patch pyramid
# (crops 314 / 383 of 0.6-1.0 of the image, patches 112 / 96, two views
# each), 150 prototypes per scale, 300 global, all lambdas 0.25; batch
# 2 x 64; global queue 1920 and patch queues 5000 per scale from epoch 80;
# prototypes frozen for 648 iterations (about one epoch of COCO train2014
# at batch 128); COCO train2014 images as an unlabeled folder, 200 epochs.
_base_ = 'mmpretrain::swav/swav_resnet50_8xb32-mcrop-coslr-200e_in1k-224px-96px.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

data_root = 'data/coco/'  # data/coco/train2014/*.jpg, no annotations used
grids = [2, 3]
num_patch_views = 2
num_global_prototypes = 300
num_local_prototypes = 150

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='PyramidPatches',
        grids=grids,
        crop_sizes=[314, 383],
        patch_sizes=[112, 96],
        crop_ratio_range=(0.6, 1.0),
        num_views=num_patch_views,
        # the global views' augmentations after their crop
        patch_pipeline=_base_.view_pipeline1[1:],
        global_views=dict(
            type='MultiView',
            num_views=_base_.num_crops,
            transforms=[_base_.view_pipeline1, _base_.view_pipeline2])),
    dict(type='PackInputs')
]
batch_size = 64
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train2014',
        with_label=False,
        pipeline=train_pipeline))

patch_head = dict(
    type='PatchSwAVHead',
    neck=dict(
        type='SwAVNeck',
        in_channels=2048,
        hid_channels=2048,
        out_channels=128,
        with_avg_pool=True),
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
    num_global=num_global_prototypes,
    temperature=0.1)
model = dict(
    type='SSPRL',
    # the reference's ResNet-50 (src/resnet50.py) keeps the default init
    backbone=dict(zero_init_residual=False),
    head=dict(
        loss=dict(type='GlobalSwAVLoss', num_prototypes=num_global_prototypes)),
    grids=grids,
    num_patch_views=num_patch_views,
    patch_heads=[patch_head] * len(grids),
    cross_scale_heads=[cross_scale_head] * len(grids),
    local_loss_weight=[0.25, 0.25],
    l2g_loss_weight=[0.25, 0.25])
custom_hooks = [
    dict(
        type='SSPRLHook',
        priority='VERY_HIGH',
        batch_size=batch_size,
        epoch_queue_starts=80,
        crops_for_assign=[0, 1],
        feat_dim=128,
        queue_length=1920,
        patch_queue_lengths=[5000, 5000],
        frozen_layers_cfg=dict(prototypes=648))
]
auto_scale_lr = dict(base_batch_size=128)
# A rank waits at most 30 minutes in a collective (NCCL's default: 10);
# see docs/benchmarks.md, dress rehearsal.
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))
