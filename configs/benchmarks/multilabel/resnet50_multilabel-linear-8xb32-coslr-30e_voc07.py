# Multi-label linear probe (frozen ResNet-50, BCE) on PASCAL VOC 2007:
# trainval -> test, mAP with VOC's difficult labels ignored. Data from a
# local path (MMPretrain's VOC layout: data/VOC2007/{JPEGImages,
# Annotations,ImageSets}); the checkpoint's `backbone.*` keys:
#   tools/dist_train.sh configs/benchmarks/multilabel/resnet50_multilabel-linear-8xb32-coslr-30e_voc07.py 8 \
#       --pretrained CKPT
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/voc_bs16.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

num_classes = 20
data_root = 'data/VOC2007'
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(
        frozen_stages=4,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    neck=[
        dict(type='GlobalAveragePooling'),
        dict(type='ClsBatchNormNeck', input_features=2048)
    ],
    head=dict(
        _delete_=True,
        type='MultiLabelLinearClsHead',
        num_classes=num_classes,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', use_sigmoid=True)))

train_dataloader = dict(
    batch_size=32, num_workers=8, dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=32, num_workers=8, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

max_epochs = 30
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
auto_scale_lr = dict(base_batch_size=256)
