# Weighted kNN (k = 10/20/100/200, T = 0.07) and k-means clustering metrics
# of a pre-trained ResNet-18 on an ImageNet-style folder: train/ is the
# memory bank, val/ the queries and the clustered images (one cluster per
# class folder):
#   DATA_ROOT=/my/images tools/test.py \
#       configs/downstream/knn/knn_resnet18_custom-folder.py CKPT
_base_ = [
    '../../_base_/datasets/custom-folder_bs64_cls.py',
    '../../_base_/cpu_runtime.py',
]

model = dict(
    type='PooledFeatureModel',
    backbone=dict(type='ResNet', depth=18, norm_cfg=dict(type='BN')))

train_dataloader = None
val_dataloader = None
val_evaluator = None
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='KNNDataset',
        bank=dict(
            type=_base_.dataset_type,
            data_root=_base_.data_root,
            data_prefix='train',
            pipeline=_base_.test_pipeline),
        query=dict(
            type=_base_.dataset_type,
            data_root=_base_.data_root,
            data_prefix='val',
            pipeline=_base_.test_pipeline)))
test_evaluator = [
    dict(type='KNNAccuracy', ks=(10, 20, 100, 200), temperature=0.07),
    dict(type='ClusteringMetric'),
]
test_cfg = dict()
