# Semi-supervised ImageNet with 10% of the labels (see the 1% config).
_base_ = './resnet50_semi-1pct-coslr-20e_in1k.py'

train_dataloader = dict(dataset=dict(ann_file='meta/train_10pct.txt'))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)}))
auto_scale_lr = dict(base_batch_size=256)  # 8 GPUs x 32
