# Fine-tuning the whole pre-trained ResNet-18 on an ImageNet-style folder,
# the linear probe's data, budget and command.
_base_ = '../linear/resnet18_linear-1xb64-coslr-30e_custom-folder.py'

model = dict(backbone=dict(frozen_stages=-1))
optim_wrapper = dict(
    optimizer=dict(lr=0.05, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)}))
