# An ImageNet-style folder for supervised evaluation (kNN, clustering,
# linear probe, fine-tuning): $DATA_ROOT/train/<class>/* and
# $DATA_ROOT/val/<class>/*, the same class folders in both (a class's index
# is its place in the sorted folder names). DATA_ROOT is an environment
# variable (mmengine substitutes it when it reads the config), read by the
# custom-folder pre-training configs too. Pre-processing of those configs:
# ImageNet's mean / std, the 64 px centre crop of their feat_pipeline
# (tests/test_tools/test_custom_data_walkthrough.py checks they agree).
dataset_type = 'CustomDataset'
data_root = '{{$DATA_ROOT:data/custom/}}'
img_size = 64
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

data_preprocessor = dict(
    type='ClsDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 8 // 7, edge='short'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
# The probe sees the frozen features of the test pipeline; the flip is off
# (prob=0.) because it changes the class of some images (digits, text):
# `train_dataloader.dataset.pipeline.3.prob=0.5` turns it on.
train_pipeline = test_pipeline[:3] + [
    dict(type='RandomFlip', prob=0.),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
