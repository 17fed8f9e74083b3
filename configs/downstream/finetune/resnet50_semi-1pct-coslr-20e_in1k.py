# Semi-supervised ImageNet with 1% of the labels. Write the annotation file
# once with
#   python tools/dataset_converters/make_label_subset.py \
#       data/imagenet/meta/train.txt data/imagenet/meta/train_1pct.txt --percent 1
_base_ = 'mmpretrain::mocov2/benchmarks/resnet50_8xb32-linear-steplr-100e_in1k.py'
custom_imports = dict(imports=['hirl_mm'], allow_failed_imports=False)

model = dict(backbone=dict(frozen_stages=-1))
train_dataloader = dict(dataset=dict(ann_file='meta/train_1pct.txt'))
max_epochs = 20
optim_wrapper = dict(
    optimizer=dict(lr=0.01, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=100.)}))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[12, 16], gamma=0.2)
]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=256)  # 8 GPUs x 32
