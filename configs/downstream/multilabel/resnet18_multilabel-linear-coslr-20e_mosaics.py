# Multi-label linear probe of a frozen pre-trained ResNet-18 on the embedded
# photo mosaics (PhotoMosaics: 5 domains, 2-4 photo patches per 64 px
# mosaic), BCE, mAP:
#   tools/train.py configs/downstream/multilabel/resnet18_multilabel-linear-coslr-20e_mosaics.py \
#       --pretrained CKPT
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    '../../_base_/cpu_runtime.py',
]
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

num_classes = 5
data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    to_onehot=True)  # lists of labels -> multi-hot targets

model = dict(
    backbone=dict(
        norm_cfg=dict(type='BN'),
        frozen_stages=4,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    # parameter-free BN before the linear layer, as in the single-label
    # embedded probe (features of small SSL runs vary widely in scale)
    neck=[
        dict(type='GlobalAveragePooling'),
        dict(type='ClsBatchNormNeck', input_features=512)
    ],
    head=dict(
        _delete_=True,
        type='MultiLabelLinearClsHead',
        num_classes=num_classes,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', use_sigmoid=True)))

dataset_type = 'PhotoMosaics'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, split='test', pipeline=test_pipeline))
test_dataloader = val_dataloader
# mAP (macro over classes) and macro precision / recall / F1 at 0.5
val_evaluator = [
    dict(type='AveragePrecision'),
    dict(type='MultiLabelMetric', average='macro')
]
test_evaluator = val_evaluator

max_epochs = 20
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=0.))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        by_epoch=True,
        begin=0,
        end=max_epochs)
]
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)  # 1 GPU x 64
