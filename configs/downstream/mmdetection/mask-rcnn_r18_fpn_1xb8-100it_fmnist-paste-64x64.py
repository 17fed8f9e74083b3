# Embedded-scale transfer: Mask R-CNN R18-FPN on Fashion-MNIST items pasted
# on photo backgrounds (64 px, 1-3 objects of 20-36 px, 10 classes, 2000
# training / 300 test images, written to the data cache on first use), BN
# (CPU), 100 iterations of batch 8, box + mask AP.
#   tools/train.py configs/downstream/mmdetection/mask-rcnn_r18_fpn_1xb8-100it_fmnist-paste-64x64.py \
#       --pretrained CKPT
# Random init: --random-init
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['hirl_mm.transfer'], allow_failed_imports=False)

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    # the Fashion-MNIST pre-training normalisation
    data_preprocessor=dict(mean=[72.94] * 3, std=[90.02] * 3),
    backbone=dict(
        depth=18,
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    # heads slimmed to the small images (CPU): 128-channel FPN, 2fc box
    # head, 2-conv mask head, 32 RoIs per image
    neck=dict(
        in_channels=[64, 128, 256, 512], out_channels=128, norm_cfg=norm_cfg),
    rpn_head=dict(
        in_channels=128,
        feat_channels=128,
        anchor_generator=dict(scales=[4], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=128),
        bbox_head=dict(in_channels=128, fc_out_channels=256, num_classes=10),
        mask_roi_extractor=dict(out_channels=128),
        mask_head=dict(
            num_convs=2,
            in_channels=128,
            conv_out_channels=128,
            norm_cfg=norm_cfg,
            num_classes=10)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=32), mask_size=28)),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

dataset_type = 'PastedObjectsCocoDataset'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),  # scale_factor
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        # instances: the metric's ground truth (no ann_file)
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'instances'))
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        split='train',
        num_images=2000,
        img_size=64,
        scale=(20, 36),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        split='test',
        num_images=300,
        img_size=64,
        scale=(20, 36),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# ground truth converted from the data set (ann_file=None)
val_evaluator = dict(ann_file=None, metric=['bbox', 'segm'])
test_evaluator = val_evaluator

max_iters = 100
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=25),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[75, 90],
        gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
