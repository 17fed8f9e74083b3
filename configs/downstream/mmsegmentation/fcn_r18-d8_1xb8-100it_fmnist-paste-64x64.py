# Embedded-scale transfer: FCN R18-D8 on Fashion-MNIST items pasted on photo
# backgrounds (64 px, 11 classes = background + 10; the same images as the
# detection config), BN (CPU), 100 iterations of batch 8, mIoU.
#   tools/train.py configs/downstream/mmsegmentation/fcn_r18-d8_1xb8-100it_fmnist-paste-64x64.py \
#       --pretrained CKPT
# Random init: --random-init
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py'
custom_imports = dict(imports=['hirl_mm.transfer'], allow_failed_imports=False)

crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    # the Fashion-MNIST pre-training normalisation
    data_preprocessor=dict(mean=[72.94] * 3, std=[90.02] * 3, size=crop_size),
    backbone=dict(
        type='ResNet',
        depth=18,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    decode_head=dict(
        in_channels=512, channels=128, num_classes=11, norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=256, channels=64, num_classes=11, norm_cfg=norm_cfg))

dataset_type = 'PastedObjectsSegDataset'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        split='train',
        num_images=2000,
        img_size=64,
        scale=(20, 36),
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
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 100
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=8)
