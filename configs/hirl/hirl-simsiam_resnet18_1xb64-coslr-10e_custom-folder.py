# HIRL-SimSiam on your own images at CPU scale: R18, 64 px crops, batch 64,
# 10 epochs, prototypes [100, 20, 5] from epoch 3 (the embedded
# Fashion-MNIST recipe), MMPretrain's CustomDataset on data/custom/train
# (any depth, no labels needed; >= 100 images). For one sub-folder per
# class add `--cfg-options train_dataloader.dataset.with_label=True`: the
# prototype hook then also logs the tree's agreement with those classes.
# Recipe: docs/custom_data.md.
_base_ = './hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py'

data_root = '{{$DATA_ROOT:data/custom/}}'  # $DATA_ROOT if set
img_size = 64
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
view_pipeline = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.),
         backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                          saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs')
]
# Deterministic pipeline of the prototype hook and the pictures.
feat_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 8 // 7, edge='short'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        with_label=False,
        pipeline=train_pipeline))
custom_hooks = [
    dict(type='SimSiamHook', priority='HIGH', fix_pred_lr=True, lr=0.05),
    dict(type='HierarchicalPrototypeHook', warmup_epochs=3,
         pipeline=feat_pipeline, batch_size=256)
]
auto_scale_lr = dict(base_batch_size=64)
# No kNN monitor while training (the Fashion-MNIST parent's reads
# Fashion-MNIST): a folder may have no labels; the evaluation configs of
# docs/custom_data.md score the checkpoints.
val_dataloader = None
val_evaluator = None
val_cfg = None
