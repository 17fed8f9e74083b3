# Fine-tuning the whole pre-trained ResNet-18 on embedded Fashion-MNIST.
_base_ = '../linear/resnet18_linear-coslr-20e_fmnist.py'

model = dict(backbone=dict(frozen_stages=-1))
optim_wrapper = dict(
    optimizer=dict(lr=0.05, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)}))
auto_scale_lr = dict(base_batch_size=256)  # 1 GPU x 256
