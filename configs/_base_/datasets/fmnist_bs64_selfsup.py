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
