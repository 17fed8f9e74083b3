# Embedded Fashion-MNIST for supervised evaluation (linear probe,
# fine-tuning, semi-supervised), fine and coarse labels, 32 x 32.
dataset_type = 'HierarchicalFashionMNIST'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

data_preprocessor = dict(
    type='ClsDataPreprocessor',
    num_classes=10,
    mean=[72.94, 72.94, 72.94],
    std=[90.02, 90.02, 90.02],
    to_rgb=True)

# Only flips: frozen features of short CPU pre-training are not invariant
# to crops (RandomResizedCrop cut the linear probe from 63% to 30%).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=32),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=32),
    dict(type='PackInputs', algorithm_keys=['coarse_label']),
]

train_dataloader = dict(
    batch_size=256,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        split='train',
        subset_size=10000,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, split='test', pipeline=test_pipeline))
test_dataloader = val_dataloader
# Fine top-1 and the coarse accuracy of the same predictions.
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='CoarseAccuracy')
]
test_evaluator = val_evaluator
