# k-means clustering metrics (NMI, AMI, ARI, Hungarian ACC; one cluster per
# class folder) of a pre-trained ResNet-18's pooled features of the val/
# images of an ImageNet-style folder. The kNN config reports the same
# scores beside kNN; this one skips embedding the train/ bank:
#   DATA_ROOT=/my/images tools/test.py \
#       configs/downstream/clustering/clustering_resnet18_custom-folder.py CKPT
# (`--random-init` instead of CKPT: the random-init baseline). The train/
# images instead: `--cfg-options test_dataloader.dataset.data_prefix=train`.
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
test_evaluator = [dict(type='ClusteringMetric')]
test_cfg = dict()
