# Fashion-MNIST (embedded, Debian's dataset-fashion-mnist) for
# self-supervised pre-training at 32 x 32 on CPU.
dataset_type = 'HierarchicalFashionMNIST'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[72.94, 72.94, 72.94],
    std=[90.02, 90.02, 90.02],
    to_rgb=True)

view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.),
         backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
         prob=0.8),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs')
]
# Deterministic pipeline the prototype hook and the evaluation use.
feat_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=32),
    dict(type='PackInputs', algorithm_keys=['coarse_label']),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    drop_last=True,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        split='train',
        subset_size=10000,
        pipeline=train_pipeline))

# Progress while pre-training (docs/online_evaluation.md): a linear
# classifier on the training steps' own backbone features (top-1 logged
# every epoch) and a kNN monitor (k = 20) of 1000 held-out test images
# against 2000 training images, every `train_cfg.val_interval` epochs.
custom_hooks = [dict(type='OnlineLinearProbeHook')]
val_dataloader = dict(
    batch_size=256,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='KNNDataset',
        bank=dict(
            type=dataset_type,
            split='train',
            subset_size=2000,
            pipeline=feat_pipeline),
        query=dict(
            type=dataset_type,
            split='test',
            subset_size=1000,
            pipeline=feat_pipeline)))
val_evaluator = dict(type='KNNAccuracy', ks=(20, ), topk=(1, ))
val_cfg = dict(type='FeatureValLoop')
