# The reference linear protocol (resnet50_linear-steplr-100e_in1k.py:
# frozen R50, SGD lr 30, 8 x 32 images a step, 100 epochs, steps at 60 / 80,
# 224 px RandomResizedCrop and flip) on an ImageNet-style folder, for the
# custom-folder R50 pre-training; set the number of class folders:
#   DATA_ROOT=/my/images tools/dist_train.sh \
#       configs/downstream/linear/resnet50_linear-8xb32-steplr-100e_custom-folder.py 8 \
#       --pretrained CKPT --cfg-options model.head.num_classes=C
# Budget: 100 x ceil(N / 256) iterations for N train/ images; keep at least
# 500 (docs/custom_data.md). The flip is on, as in the reference: off with
# `train_dataloader.dataset.pipeline.2.prob=0.` where a flip changes the
# class (digits, text).
_base_ = './resnet50_linear-steplr-100e_in1k.py'

data_root = '{{$DATA_ROOT:data/custom/}}'  # $DATA_ROOT if set
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=_base_.train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        pipeline=_base_.test_pipeline))
test_dataloader = val_dataloader
# top-5 needs five classes or more
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
