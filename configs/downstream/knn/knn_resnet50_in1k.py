# The reference kNN protocol on ImageNet-1k (train = memory bank, val =
# queries) for a pre-trained ResNet-50, with k-means clustering metrics:
#   tools/dist_test.sh configs/downstream/knn/knn_resnet50_in1k.py CKPT 8
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

model = dict(
    type='PooledFeatureModel',
    backbone=dict(type='ResNet', depth=50),
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=128,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='KNNDataset',
        bank=dict(type='ImageNet', data_root='data/imagenet', split='train',
                  pipeline=test_pipeline),
        query=dict(type='ImageNet', data_root='data/imagenet', split='val',
                   pipeline=test_pipeline)))
test_evaluator = [
    dict(type='KNNAccuracy', ks=(10, 20, 100, 200), temperature=0.07),
    dict(type='ClusteringMetric', kmeans_cfg=dict(init='random')),
]
test_cfg = dict()
