# Multi-label linear probe (frozen ResNet-50, BCE) on PASCAL VOC 2007:
# trainval -> test, mAP with VOC's difficult labels ignored. The protocol of
# SS-PRL's benchmark (WesleyHsieh0806/SS-PRL, benchmarks/classification:
# main.py, model.py, scripts/linear_voc.sh): global-average-pooled features
# of the frozen backbone (eval mode), one linear layer (weights N(0, 0.01),
# bias 0.1), BCE summed over classes and averaged over images, SGD momentum
# 0.9, lr 0.03 at batch 32, weight decay 1e-6, cosine to 0 over 100 epochs,
# gradient norm clipped to 10; RandomResizedCrop 224 + flip for training,
# resize 256 + centre crop 224 for testing. Data from a local path
# (MMPretrain's VOC layout: data/VOC2007/{JPEGImages,Annotations,
# ImageSets}); the checkpoint's `backbone.*` keys:
#   tools/train.py configs/downstream/multilabel/resnet50_multilabel-linear-1xb32-coslr-100e_voc07.py \
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
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        _delete_=True,
        type='MultiLabelLinearClsHead',
        num_classes=num_classes,
        in_channels=2048,
        # the head averages the per-image sums over classes
        loss=dict(type='CrossEntropyLoss', use_sigmoid=True),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01, bias=0.1)))

batch_size = 32
train_dataloader = dict(
    batch_size=batch_size, num_workers=8, dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=batch_size, num_workers=8, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

max_epochs = 100
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-6),
    clip_grad=dict(max_norm=10.))
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
auto_scale_lr = dict(base_batch_size=batch_size)
