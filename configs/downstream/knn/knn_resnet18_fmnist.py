# Weighted kNN (k = 10/20/100/200, T = 0.07) and k-means clustering metrics
# of a pre-trained ResNet-18 on embedded Fashion-MNIST, fine and coarse:
#   tools/test.py configs/downstream/knn/knn_resnet18_fmnist.py CKPT
# tools/main_job.py evaluates each run through this config, with the run's
# backbone, training subset (the kNN bank) and k swapped in.
_base_ = [
    '../../_base_/datasets/fmnist_bs256_cls.py',
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
            split='train',
            subset_size=10000,
            pipeline=_base_.test_pipeline),
        query=dict(
            type=_base_.dataset_type,
            split='test',
            pipeline=_base_.test_pipeline)))
test_evaluator = [
    dict(type='KNNAccuracy', ks=(10, 20, 100, 200), temperature=0.07),
    dict(type='ClusteringMetric'),
]
test_cfg = dict()
