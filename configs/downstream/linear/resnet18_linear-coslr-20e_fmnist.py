# Linear probe of a frozen pre-trained ResNet-18 on embedded Fashion-MNIST:
#   tools/train.py configs/downstream/linear/resnet18_linear-coslr-20e_fmnist.py \
#       --pretrained CKPT
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    '../../_base_/datasets/fmnist_bs256_cls.py',
    '../../_base_/cpu_runtime.py',
]

model = dict(
    backbone=dict(
        norm_cfg=dict(type='BN'),
        frozen_stages=4,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    # features of small SSL runs vary widely in scale: normalise them with
    # a parameter-free BN before the linear layer (as MMPretrain's MAE
    # linear probe does)
    neck=[
        dict(type='GlobalAveragePooling'),
        dict(type='ClsBatchNormNeck', input_features=512)
    ],
    head=dict(num_classes=10, topk=(1, )))

max_epochs = 20
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0,
         end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)  # 1 GPU x 256
