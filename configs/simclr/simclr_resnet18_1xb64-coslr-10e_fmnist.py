# MMPretrain's SimCLR on embedded Fashion-MNIST (CPU scale): the project's
# data, schedule and runtime bases and SimCLR's model at ResNet-18 size
# (BN, a 128-d projection, temperature 0.1). MMPretrain's own config cannot
# be a second base here: it brings its ImageNet data and runtime, and
# mmengine refuses a key that two bases define (docs/methods.md).
_base_ = [
    '../_base_/datasets/fmnist_bs64_selfsup.py',
    '../_base_/schedules/sgd_coslr_10e.py',
    '../_base_/cpu_runtime.py',
]

model = dict(
    type='SimCLR',
    backbone=dict(
        type='ResNet',
        depth=18,
        norm_cfg=dict(type='BN'),
        zero_init_residual=True),
    neck=dict(
        type='NonLinearNeck',
        in_channels=512,
        hid_channels=512,
        out_channels=128,
        num_layers=2,
        with_avg_pool=True,
        norm_cfg=dict(type='BN1d')),
    head=dict(
        type='ContrastiveHead',
        loss=dict(type='CrossEntropyLoss'),
        temperature=0.1))
auto_scale_lr = dict(base_batch_size=64)
