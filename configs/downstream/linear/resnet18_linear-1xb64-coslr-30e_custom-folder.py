# Linear probe of a frozen pre-trained ResNet-18 on an ImageNet-style
# folder (train/ to train, val/ to score), set the number of class folders:
#   DATA_ROOT=/my/images tools/train.py \
#       configs/downstream/linear/resnet18_linear-1xb64-coslr-30e_custom-folder.py \
#       --pretrained CKPT --cfg-options model.head.num_classes=10
# Budget: 30 epochs of batch 64 = 30 x ceil(N / 64) iterations for N train/
# images (570 for 1,200), growing with the folder. Keep at least 500:
# max_epochs = max(30, ceil(500 / ceil(N / 64))), e.g. 100 for 300 images
# (docs/custom_data.md). 20 epochs of batch 256 are 100 iterations on
# 1,200 images: an underfit probe.
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    '../../_base_/datasets/custom-folder_bs64_cls.py',
    '../../_base_/cpu_runtime.py',
]

model = dict(
    backbone=dict(
        norm_cfg=dict(type='BN'),
        frozen_stages=4,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    # features of small SSL runs vary widely in scale: a parameter-free BN
    # before the linear layer (as MMPretrain's MAE linear probe)
    neck=[
        dict(type='GlobalAveragePooling'),
        dict(type='ClsBatchNormNeck', input_features=512)
    ],
    head=dict(num_classes=10, topk=(1, )))

max_epochs = 30
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
auto_scale_lr = dict(base_batch_size=64)  # 1 GPU x 64
