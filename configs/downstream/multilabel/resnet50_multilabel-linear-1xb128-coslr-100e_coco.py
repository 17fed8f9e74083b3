# The multi-label linear probe on COCO 2014 (80 classes; labels = the
# categories of each image's instances, COCOMultiLabel), train2014 ->
# val2014, mAP; SS-PRL's COCO setting (benchmarks/classification/scripts/
# linear_coco.sh): the VOC probe at batch 128, lr 0.1. Data from a local
# path:
#   data/coco/annotations/instances_{train,val}2014.json
#   data/coco/{train,val}2014/*.jpg
_base_ = './resnet50_multilabel-linear-1xb32-coslr-100e_voc07.py'

num_classes = 80
data_root = 'data/coco'
data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes))

batch_size = 128
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(
        _delete_=True,
        type='COCOMultiLabel',
        data_root=data_root,
        ann_file='annotations/instances_train2014.json',
        data_prefix='train2014',
        pipeline=_base_.train_pipeline))
val_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(
        _delete_=True,
        type='COCOMultiLabel',
        data_root=data_root,
        ann_file='annotations/instances_val2014.json',
        data_prefix='val2014',
        pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='AveragePrecision'),
    dict(type='MultiLabelMetric', average='macro')
]
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=0.1))
auto_scale_lr = dict(base_batch_size=batch_size)
