# The kNN and clustering protocol of knn_resnet50_in1k.py (224 px centre
# crops, ImageNet's mean / std, as the R50 pre-training's) on an
# ImageNet-style folder, for the custom-folder R50 pre-training: train/ is
# the memory bank, val/ the queries and the clustered images:
#   DATA_ROOT=/my/images tools/dist_test.sh \
#       configs/downstream/knn/knn_resnet50_custom-folder.py CKPT 8
_base_ = './knn_resnet50_in1k.py'

data_root = '{{$DATA_ROOT:data/custom/}}'  # $DATA_ROOT if set
test_dataloader = dict(
    dataset=dict(
        bank=dict(
            _delete_=True,
            type='CustomDataset',
            data_root=data_root,
            data_prefix='train',
            pipeline=_base_.test_pipeline),
        query=dict(
            _delete_=True,
            type='CustomDataset',
            data_root=data_root,
            data_prefix='val',
            pipeline=_base_.test_pipeline)))
